package artifact

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/pgzip"
)

func TestBuildAll(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	snap := snapshot(t, testNodesTOML)
	b, reg := newBuilder(t, tt.root)
	st, err := b.BuildAll(bg, snap, 4)
	if err != nil {
		t.Fatal(err)
	}
	// image, wwinit's files and rendered hosts, generic's files; the
	// per-node members of 2 nodes × 2 overlays are checked, not stored.
	if st.Nodes != 2 || st.Failed != 0 || st.Built != 4 || st.Checked != 4 || st.BytesWritten == 0 {
		t.Errorf("stats %+v", st)
	}
	st2, err := b.BuildAll(bg, snap, 4)
	if err != nil || st2.Built != 0 || st2.Reused == 0 {
		t.Errorf("second run: %+v %v", st2, err)
	}
	// The first run walks the image once; the second finds it unchanged
	// through the watches.
	if w := counter(t, reg, "wwserver_build_tree_walks_total", "image"); w != 1 {
		t.Errorf("%v image walks for two runs, want 1", w)
	}

	if ents, _ := os.ReadDir(filepath.Join(tt.root, "state/overlays/node")); len(ents) != 0 {
		t.Errorf("BuildAll stored %d per-node members", len(ents))
	}

	// A restarted server adopts the durable files (image, shared overlay
	// members) and builds the cheap per-node ones on request.
	b2, reg2 := newBuilder(t, tt.root)
	st3, err := b2.BuildAll(bg, snap, 2)
	if err != nil {
		t.Fatal(err)
	}
	if st3.Built != 0 || st3.Reused != 8 || counter(t, reg2, "wwserver_build_builds_total", "image") != 0 {
		t.Errorf("after restart: %+v", st3)
	}
	if _, err := b2.RuntimeOverlay(bg, snap, snap.Nodes.ByName["n001"]); err != nil {
		t.Fatal(err)
	}
	if n := counter(t, reg2, "wwserver_build_builds_total", "overlay_node"); n != 1 {
		t.Errorf("after restart, a request built %v per-node members, want 1", n)
	}

	// Failing nodes are reported, the others built.
	bad := strings.Replace(testNodesTOML, `[nodes.n002]
profiles = ["default"]`, `[nodes.n002]
profiles = ["default"]
system_overlays = ["missing"]`, 1)
	snapBad := snapshot(t, bad)
	st4, err := b.BuildAll(bg, snapBad, 2)
	if !errors.Is(err, ErrNotFound) || st4.Failed != 1 || !strings.Contains(err.Error(), `node n002: system overlay: overlay "missing" does not exist`) {
		t.Errorf("bad node: %+v %v", st4, err)
	}
}

// writeBigOverlays makes a wwinit-like overlay: a 10 MB binary (a Go
// executable's bytes, so it compresses like one), a symlink and 3 templates,
// plus a runtime overlay with 2 templates, and a small image.
func writeBigOverlays(tb testing.TB, tt *testTree) {
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		tb.Fatal(err)
	}
	for len(bin) < 10<<20 {
		bin = append(bin, bin...)
	}
	tt.file("overlays/wwinit/usr/sbin/wwclient", string(bin[:10<<20]), 0o755)
	tt.symlink("overlays/wwinit/init", "usr/sbin/wwclient")
	tt.file("overlays/wwinit/etc/wwclient/wwclient.toml.ww", `node = "{{.Node.Name}}"
server = "{{.Server.Address}}:{{.Server.Port}}"
update_interval = {{.Server.UpdateInterval}}
secure = {{.Server.Secure}}
asset_key = "{{.Node.AssetKey}}"
root = "{{.Node.Root}}"
{{range .Node.Network}}[[network]]
name = "{{.Name}}"
hwaddr = "{{.HWAddr}}"
ipaddr = "{{.IPAddr}}"
netmask = "{{.Netmask}}"
primary = {{.Primary}}
{{end}}`, 0o600)
	tt.file("overlays/wwinit/etc/hostname.ww", "{{.Node.Name}}\n", 0o644)
	tt.file("overlays/wwinit/etc/network/interfaces.ww", `{{range .Node.Network}}auto {{.Name}}
iface {{.Name}} inet static
  address {{.IPAddr}}/{{prefixlen .Netmask}}
{{end}}`, 0o644)
	tt.file("overlays/generic/etc/hosts.ww", "127.0.0.1 localhost\n{{range .Nodes}}{{.Primary.IPAddr}} {{.Name}}\n{{end}}", 0o644)
	tt.file("overlays/generic/etc/issue.ww", "{{upper .Node.Name}}\n", 0o644)
	tt.file("images/debian/rootfs/bin/busybox", string(bin[:1<<20]), 0o755)
	tt.file("images/debian/rootfs/boot/vmlinuz-6.1.0-28-amd64", "kernel", 0o644)
}

func manyNodes(n int) string {
	var sb strings.Builder
	sb.WriteString(`[profiles.default]
image = "debian"
system_overlays = ["wwinit"]
runtime_overlays = ["generic"]
`)
	for i := range n {
		fmt.Fprintf(&sb, "[nodes.n%05d]\nprofiles = [\"default\"]\n[nodes.n%05d.network.eth0]\nhwaddr = \"52:54:00:%02x:%02x:%02x\"\nipaddr = \"10.%d.%d.%d\"\nnetmask = \"255.0.0.0\"\n",
			i, i, i>>16&255, i>>8&255, i&255, i>>16&255, i>>8&255, i&255)
	}
	return sb.String()
}

func dirSize(tb testing.TB, dir string) (total int64, files int) {
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
			files++
		}
		return nil
	})
	return
}

// BenchmarkBuildAll1000 builds 1,000 nodes (WW_BENCH_NODES to change) from
// scratch (Warewulf: 250 s and 10.3 GB for the same).
// Run: go test -run XXX -bench BuildAll -benchtime 1x
func BenchmarkBuildAll1000(b *testing.B) {
	nodes := 1000
	if s := os.Getenv("WW_BENCH_NODES"); s != "" {
		fmt.Sscan(s, &nodes)
	}
	for range b.N {
		b.StopTimer()
		tt := newTree(b)
		writeBigOverlays(b, tt)
		snap := snapshot(b, manyNodes(nodes))
		bl, _ := newBuilder(b, tt.root)
		b.StartTimer()
		start := time.Now()
		st, err := bl.BuildAll(bg, snap, 0)
		if err != nil {
			b.Fatal(err)
		}
		wall := time.Since(start)
		b.StopTimer()
		size, files := dirSize(b, filepath.Join(tt.root, "state"))
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(float64(st.BytesWritten)/1e6, "MB-written")
		for _, k := range kinds {
			sz, n := dirSize(b, filepath.Join(tt.root, "state", k.dir))
			b.Logf("  state/%s: %d files, %.1f MB", k.dir, n, float64(sz)/1e6)
		}
		b.Logf("%d nodes: %v wall, %d files built, %.1f MB written, state/ %d files %.1f MB",
			nodes, wall.Round(time.Millisecond), st.Built, float64(st.BytesWritten)/1e6, files, float64(size)/1e6)

		// The steady state: every node asks again, all hits.
		start = time.Now()
		st2, err := bl.BuildAll(bg, snap, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("again (all cached): %v, %d built", time.Since(start).Round(time.Millisecond), st2.Built)
		// One nodes.toml change: only per-node parts are rebuilt.
		snap2 := snapshot(b, manyNodes(nodes)+"\n[nodes.extra]\nprofiles = [\"default\"]\n")
		start = time.Now()
		st3, err := bl.BuildAll(bg, snap2, 0)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("after a nodes.toml change: %v, %d built, %.1f MB written",
			time.Since(start).Round(time.Millisecond), st3.Built, float64(st3.BytesWritten)/1e6)
	}
}

// BenchmarkGzipLevel compares compressors and levels on a tree
// (WW_BENCH_TREE, default the lab image build/image/rootfs): compress/gzip on
// one core (what images used before) and pgzip on every core (writeGzip's
// parallel path). It reports wall time, CPU time (the machine may be shared)
// and size. Run: go test -run XXX -bench GzipLevel -benchtime 1x -v
func BenchmarkGzipLevel(b *testing.B) {
	tree := os.Getenv("WW_BENCH_TREE")
	if tree == "" {
		tree = "../../build/image/rootfs"
	}
	if _, err := os.Stat(tree); err != nil {
		b.Skip("no tree: ", err)
	}
	var raw countWriter
	raw.w = io.Discard
	if err := writeImage(&raw, tree); err != nil {
		b.Fatal(err)
	}
	single := func(w io.Writer, level int) io.WriteCloser {
		zw, _ := gzip.NewWriterLevel(w, level)
		return zw
	}
	parallel := func(w io.Writer, level int) io.WriteCloser {
		zw, _ := pgzip.NewWriterLevel(w, level)
		zw.SetConcurrency(parallelBlock, runtime.GOMAXPROCS(0))
		return zw
	}
	for _, c := range []struct {
		name  string
		level int
		new   func(io.Writer, int) io.WriteCloser
	}{
		{"gzip/level1", gzip.BestSpeed, single},
		{"gzip/level6", gzip.DefaultCompression, single},
		{"pgzip/level1", gzip.BestSpeed, parallel},
		{"pgzip/level6", gzip.DefaultCompression, parallel},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				out := &countWriter{w: io.Discard}
				zw := c.new(out, c.level)
				cpu0 := cpuTime()
				start := time.Now()
				if err := writeImage(zw, tree); err != nil {
					b.Fatal(err)
				}
				zw.Close()
				d, cpu := time.Since(start), cpuTime()-cpu0
				b.ReportMetric(float64(out.n)/1e6, "MB")
				b.ReportMetric(float64(raw.n)/1e6/d.Seconds(), "MB/s")
				b.ReportMetric(cpu.Seconds(), "cpu-s")
				b.Logf("%s: %.1f MB -> %.2f MB (%.1f%%) in %v, %v CPU", c.name, float64(raw.n)/1e6, float64(out.n)/1e6,
					100*float64(out.n)/float64(raw.n), d.Round(time.Millisecond), cpu.Round(time.Millisecond))
			}
		})
	}
}

// cpuTime is the CPU time (user + system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFingerprint walks a big tree (WW_BENCH_TREE, default /usr), as an
// image request does.
func BenchmarkFingerprint(b *testing.B) {
	tree := os.Getenv("WW_BENCH_TREE")
	if tree == "" {
		tree = "/usr"
	}
	var hc hashCache
	for range b.N {
		fp, err := fingerprintTree(tree, treeImage, &hc, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(fp.entries), "entries")
	}
}
