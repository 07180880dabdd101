package status

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got ---\n%s--- want ---\n%s", path, got, want)
	}
}

const now = 1_700_000_000

func sampleReport() *Report {
	return &Report{
		Now:                   now,
		UpdateIntervalSeconds: 60,
		Nodes: []NodeStatus{
			{Name: "c001", MAC: "52:54:00:00:00:01", Stage: StageRuntimeOverlay, Sent: "__RUNTIME__.img.gz", LastSeen: now - 16},
			{Name: "c002", MAC: "52:54:00:00:00:02", Stage: StageKernel, Sent: "vmlinuz-6.1.0-28-amd64", LastSeen: now - 3},
			{Name: "c003", MAC: "52:54:00:00:00:03"}, // never seen
			{Name: "c004", MAC: "52:54:00:00:00:04", Stage: StageRuntimeOverlay, Sent: "BAD_ASSET", LastSeen: now - 121},
			{Name: "c005", MAC: "52:54:00:00:00:05", LastSeen: now - 40},                           // heartbeat only: no stage
			{Name: "gpu-node-with-a-long-name", Stage: StageIPXE, Sent: "ipxe", LastSeen: now + 5}, // clock skew: shown as 0
		},
		Unknown: []NodeStatus{
			{Name: "52:54:00:ff:00:01", MAC: "52:54:00:ff:00:01", Stage: StageDHCP, LastSeen: now - 1},
			{Name: "52:54:00:ff:00:02", MAC: "52:54:00:ff:00:02", Stage: StageIPXE, Sent: "ipxe", LastSeen: now - 500},
		},
	}
}

func render(t *testing.T, r *Report, o RenderOptions) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Render(&b, r, o); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRenderGolden(t *testing.T) {
	noUnknown := sampleReport()
	noUnknown.Unknown = nil
	cases := []struct {
		name string
		r    *Report
		o    RenderOptions
	}{
		{"by_name", sampleReport(), RenderOptions{}},
		{"by_lastseen", sampleReport(), RenderOptions{Sort: SortLastSeen}},
		{"color", sampleReport(), RenderOptions{Color: true}},
		{"no_unknown", noUnknown, RenderOptions{Sort: SortName}},
		{"empty", &Report{Now: now}, RenderOptions{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { golden(t, c.name, render(t, c.r, c.o)) })
	}
}

// shortNames is the sample without its long node name: the classic 80-column table.
func shortNames() *Report {
	r := sampleReport()
	r.Nodes = r.Nodes[:len(r.Nodes)-1]
	return r
}

func TestRenderFormat(t *testing.T) {
	out := string(render(t, shortNames(), RenderOptions{}))
	lines := strings.Split(out, "\n")
	if lines[0] != "NODENAME             STAGE                SENT                      LASTSEEN (s)" {
		t.Errorf("header = %q", lines[0])
	}
	if lines[1] != strings.Repeat("=", 80) {
		t.Errorf("rule = %q", lines[1])
	}
	if lines[2] != "c001                 RUNTIME_OVERLAY      __RUNTIME__.img.gz        16" {
		t.Errorf("row = %q", lines[2])
	}
	if lines[4] != "c003                 --                   --                        --" {
		t.Errorf("never-seen row = %q", lines[4])
	}
	if strings.Contains(out, "\x1b") {
		t.Error("color codes without Color")
	}
}

func TestRenderColor(t *testing.T) {
	out := string(render(t, sampleReport(), RenderOptions{Color: true}))
	red := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, ansiRed) {
			red++
			if !strings.HasSuffix(l, ansiReset) {
				t.Errorf("colored line not reset: %q", l)
			}
			// Only nodes unseen for more than 2×60 s: c004 (121 s) and the unknown MAC at 500 s.
			if !strings.Contains(l, "c004") && !strings.Contains(l, "52:54:00:ff:00:02") {
				t.Errorf("wrongly colored: %q", l)
			}
		}
	}
	if red != 2 {
		t.Errorf("%d red lines, want 2:\n%s", red, out)
	}
	// No interval known: nothing is stale.
	r := sampleReport()
	r.UpdateIntervalSeconds = 0
	if out := render(t, r, RenderOptions{Color: true}); bytes.Contains(out, []byte("\x1b")) {
		t.Error("colored without an update interval")
	}
}

func TestRenderNowOverride(t *testing.T) {
	r := shortNames()
	out := string(render(t, r, RenderOptions{Now: time.Unix(now+100, 0)}))
	if !strings.Contains(out, "c001                 RUNTIME_OVERLAY      __RUNTIME__.img.gz        116\n") {
		t.Errorf("Now not used:\n%s", out)
	}
}

func TestRenderBadSort(t *testing.T) {
	if err := Render(&bytes.Buffer{}, sampleReport(), RenderOptions{Sort: "stage"}); err == nil {
		t.Error("unknown sort accepted")
	}
}

func TestFilter(t *testing.T) {
	r := sampleReport()
	missing := r.Filter([]string{"c003", "c001", "52:54:00:ff:00:02", "nope"})
	if len(missing) != 1 || missing[0] != "nope" {
		t.Errorf("missing = %v", missing)
	}
	if len(r.Nodes) != 2 || r.Nodes[0].Name != "c001" || r.Nodes[1].Name != "c003" {
		t.Errorf("nodes = %+v", r.Nodes)
	}
	if len(r.Unknown) != 1 || r.Unknown[0].Name != "52:54:00:ff:00:02" {
		t.Errorf("unknown = %+v", r.Unknown)
	}
	// Filtering does not disturb another report's rows.
	orig := sampleReport()
	cp := *orig
	cp.Filter([]string{"c005"})
	if orig.Nodes[0].Name != "c001" || len(orig.Nodes) != 6 {
		t.Errorf("Filter modified the original rows: %+v", orig.Nodes)
	}
}

// TestRenderRowsAligned: long SENT values (the DHCP boot URL, a client's
// long TFTP file name) and long node names keep every row aligned; URLs
// get short names in the table and stay whole in --json.
func TestRenderRowsAligned(t *testing.T) {
	long := strings.Repeat("n", 63)
	r := &Report{Now: now, UpdateIntervalSeconds: 60,
		Nodes: []NodeStatus{
			{Name: "n001", Stage: StageDHCP, Sent: "http://10.99.0.1:9873/ipxe/52:54:00:99:00:01", LastSeen: now - 1},
			{Name: "n002", Stage: StageDHCP, Sent: "http://10.99.0.1:9873/ipxe-bin/ipxe.efi", LastSeen: now - 2},
			{Name: "n003", Stage: StageTFTP, Sent: "NOT_FOUND:" + strings.Repeat("x", 100), LastSeen: now - 3},
			{Name: long, Stage: StageKernel, Sent: "vmlinuz-6.1.0-28-amd64", LastSeen: now - 4},
		},
		Unknown: []NodeStatus{{Name: "52:54:00:ff:00:01", Stage: StageDHCP, Sent: "undionly.kpxe", LastSeen: now - 5}},
	}
	out := string(render(t, r, RenderOptions{}))
	lastCol := len(long) + 1 + stageWidth + 1 + sentWidth + 1
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" || strings.HasPrefix(line, "===") {
			continue
		}
		runes := []rune(line)
		if len(runes) <= lastCol || runes[lastCol-1] != ' ' || runes[lastCol] == ' ' {
			t.Errorf("row not aligned (LASTSEEN not at column %d): %q", lastCol, line)
		}
	}
	for _, want := range []string{"ipxe-script", "ipxe.efi ", "NOT_FOUND:xxxxxxxxxxxxxx…"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "http://") {
		t.Errorf("table shows a URL:\n%s", out)
	}
}
