package status

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/config"
)

// TestProgress: a progress report shows in the table as "IMAGE 41%" and in
// the JSON; the next stage clears it; heartbeats do not.
func TestProgress(t *testing.T) {
	nodes, err := config.ParseNodes("nodes.toml", []byte("[nodes.n001]\nimage = \"x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := New(nil)
	now := time.Unix(1700000000, 0)
	s.now = func() time.Time { return now }
	s.Record(Event{Node: "n001", MAC: "52:54:00:00:00:01", Stage: StageImage, Sent: "__IMAGE__.index",
		Progress: &Progress{Done: 41 << 20, Total: 100 << 20}})
	table := func() string {
		rep := s.Report(nodes)
		var buf bytes.Buffer
		if err := Render(&buf, &rep, RenderOptions{Now: now}); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	if out := table(); !strings.Contains(out, "IMAGE 41% 41M/100M ") {
		t.Fatalf("table lacks IMAGE 41%% 41M/100M:\n%s", out)
	}
	data, err := s.JSON(nodes)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"progress":{"done":42991616,"total":104857600}`)) {
		t.Fatalf("JSON lacks the progress: %s", data)
	}
	s.RecordHeartbeat("n001", "52:54:00:00:00:01", "10.0.0.1", Heartbeat{Version: "x"})
	if out := table(); !strings.Contains(out, "IMAGE 41%") {
		t.Fatalf("a heartbeat cleared the progress:\n%s", out)
	}
	s.Record(Event{Node: "n001", Stage: StageRuntimeOverlay, Sent: "__RUNTIME__.img.gz"})
	if out := table(); strings.Contains(out, "%") {
		t.Fatalf("the next stage kept the progress:\n%s", out)
	}
	for _, c := range []struct {
		p    Progress
		want int64
	}{{Progress{0, 0}, 0}, {Progress{5, 0}, 0}, {Progress{999, 1000}, 99}, {Progress{1000, 1000}, 100}, {Progress{2000, 1000}, 100}, {Progress{-1, 10}, 0}} {
		if got := c.p.Percent(); got != c.want {
			t.Errorf("%+v: %d%%, want %d%%", c.p, got, c.want)
		}
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1.0K", 9700: "9.5K", 420 << 20: "420M",
		1288490189: "1.2G", 5 << 40: "5.0T", 35 << 30: "35G", 999 << 30: "999G", 1023 << 30: "1.0T"} {
		if got := shortBytes(n); got != want {
			t.Errorf("shortBytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := StageText(NodeStatus{Stage: StageImage, Progress: &Progress{Done: 100 << 30, Total: 100 << 30}}); len(got) > stageWidth {
		t.Errorf("%q is wider than the STAGE column (%d)", got, stageWidth)
	}
}
