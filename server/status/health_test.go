package status

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/health"
)

// blockedStore is a store whose saves fail after the temporary file is
// written (the status path is a non-empty directory), like a disk that
// fills up between writes.
func blockedStore(t *testing.T) (*Store, *clock, *bytes.Buffer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	st, clk, logs := newTestStore(t, path)
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	return st, clk, logs, path
}

// TestFlushErrorLoggedOncePerMinute: a save failing every second logs one
// line per distinct error per minute, not one per attempt.
func TestFlushErrorLoggedOncePerMinute(t *testing.T) {
	st, clk, logs, _ := blockedStore(t)
	for i := range 120 {
		st.Record(Event{Node: "c00001", Stage: StageIPXE, Sent: fmt.Sprint(i)}) // a stage change: due at once
		st.flushLogged()
		clk.Add(time.Second)
	}
	if n := strings.Count(logs.String(), "node status flush failed"); n != 2 {
		t.Errorf("%d error lines for 120 failed flushes in 2 minutes, want 2:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), ".tmp-") {
		t.Errorf("error names the temporary file: %s", logs.String())
	}
}

// TestFlushErrorDegradesHealth: while saving fails the status component is
// degraded with the reason; once it works it is ok again.
func TestFlushErrorDegradesHealth(t *testing.T) {
	st, _, logs, path := blockedStore(t)
	reg := health.New()
	st.Health = reg
	st.Record(Event{Node: "c00001", Stage: StageIPXE})
	st.flushLogged()
	list, ok := reg.Components()
	if ok || len(list) != 1 || list[0].Name != HealthComponent || !strings.Contains(list[0].Reason, path) {
		t.Fatalf("health while saving fails: %+v ok=%v", list, ok)
	}
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	st.flushLogged()
	if _, ok := reg.Components(); !ok {
		t.Error("still degraded after a good save")
	}
	if !strings.Contains(logs.String(), "node status flush works again") {
		t.Errorf("recovery not logged: %s", logs.String())
	}
}

// TestUnknownMACsDoNotRewriteEverySecond: requests from new unknown MACs are
// saved with the last-seen cadence (SeenFlushInterval), not every second.
func TestUnknownMACsDoNotRewriteEverySecond(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	st, clk, _ := newTestStore(t, path)
	if err := st.Flush(); err != nil { // nothing to write yet
		t.Fatal(err)
	}
	st.Record(Event{Node: "c00001", Stage: StageIPXE})
	st.flushLogged()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	first := fi.ModTime()
	if err := os.Chtimes(path, t0, t0); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		st.Record(Event{MAC: fmt.Sprintf("02:00:00:00:00:%02x", i), Stage: StageDHCP})
		clk.Add(time.Second)
		st.flushLogged()
	}
	if fi, _ := os.Stat(path); !fi.ModTime().Equal(t0) {
		t.Fatalf("status file rewritten for unknown MACs alone within %v (mtime %v, first write %v)",
			20*time.Second, fi.ModTime(), first)
	}
	clk.Add(st.SeenFlushInterval)
	st.flushLogged()
	data, _ := os.ReadFile(path)
	if !bytes.Contains(data, []byte("02:00:00:00:00:13")) {
		t.Error("unknown MACs not saved after SeenFlushInterval")
	}
}

// TestUnknownAged: unknown MACs not heard from for UnknownMaxAge go.
func TestUnknownAged(t *testing.T) {
	st, clk, _ := newTestStore(t, "")
	st.Record(Event{MAC: "02:00:00:00:00:01", Stage: StageDHCP})
	clk.Add(UnknownMaxAge / 2)
	st.Record(Event{MAC: "02:00:00:00:00:02", Stage: StageDHCP})
	clk.Add(UnknownMaxAge/2 + time.Second)
	st.Expire(nil)
	rep := st.Report(nil)
	if len(rep.Unknown) != 1 || rep.Unknown[0].Name != "02:00:00:00:00:02" {
		t.Errorf("unknown after aging: %+v", rep.Unknown)
	}
}

// TestStageChangeLogged: one INFO line per stage a node reaches, not per
// request; and the number of nodes loaded at start.
func TestStageChangeLogged(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	st, _, logs := newTestStore(t, path)
	for range 5 {
		st.Record(Event{Node: "c00001", MAC: mac(1), Stage: StageIPXE, Sent: "ipxe"})
		st.RecordHeartbeat("c00001", mac(1), "", Heartbeat{})
	}
	st.Record(Event{Node: "c00001", MAC: mac(1), Stage: StageKernel, Sent: "vmlinuz"})
	st.Record(Event{Node: "c00002", MAC: mac(2), Stage: StageKernel, Sent: "vmlinuz"})
	if n := strings.Count(logs.String(), "node stage"); n != 3 {
		t.Errorf("%d stage lines, want 3:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "node=c00001 stage=KERNEL from=IPXE") {
		t.Errorf("stage line lacks node, stage and previous stage:\n%s", logs.String())
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := Open(path, slog.New(slog.NewTextHandler(&out, nil))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `msg="status loaded: 2 nodes"`) {
		t.Errorf("start log: %s", out.String())
	}
}
