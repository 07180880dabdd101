package serverbench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wwcluster/ww/overlays"
	"github.com/wwcluster/ww/server/artifact"
	"github.com/wwcluster/ww/server/bootscript"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/provision"
	"github.com/wwcluster/ww/server/status"
	"github.com/wwcluster/ww/tools/internal/gen"
)

const serverTOML = `address = "127.0.0.1"
listen = "127.0.0.1:9873"
update_interval = "60s"
secure = false
`

// tree writes a served tree with n nodes and returns its root.
func tree(tb testing.TB, n int) string {
	tb.Helper()
	root := tb.TempDir()
	if err := os.WriteFile(filepath.Join(root, config.ServerFile), []byte(serverTOML), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := overlays.WriteAll(filepath.Join(root, "overlays")); err != nil {
		tb.Fatal(err)
	}
	// The wwinit overlay expects the wwclient binary; a stand-in will do.
	client := filepath.Join(root, "overlays", "wwinit", filepath.FromSlash(overlays.ClientBinary))
	if err := os.MkdirAll(filepath.Dir(client), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(client, bytes.Repeat([]byte("wwclient"), 1<<16), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := gen.WriteFakeImage(filepath.Join(root, "images", "default", "rootfs"), 1); err != nil {
		tb.Fatal(err)
	}
	if err := gen.WriteNodesFile(root, n); err != nil {
		tb.Fatal(err)
	}
	return root
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// BenchmarkStoreFresh is the per-request config check (two stats and the
// stamp strings) every per-node route pays.
func BenchmarkStoreFresh(b *testing.B) {
	st, err := config.NewStore(tree(b, 1000), quiet())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		st.Fresh()
	}
}

// BenchmarkTwoStats is the floor of any stat-based check: the two stat
// calls alone.
func BenchmarkTwoStats(b *testing.B) {
	root := tree(b, 10)
	for b.Loop() {
		_, _ = os.Stat(filepath.Join(root, config.ServerFile))
		_, _ = os.Stat(filepath.Join(root, config.NodesFile))
	}
}

// BenchmarkIPXERender renders the built-in iPXE script, rotating over nodes.
func BenchmarkIPXERender(b *testing.B) {
	root := tree(b, 1000)
	st, err := config.NewStore(root, quiet())
	if err != nil {
		b.Fatal(err)
	}
	tm, err := bootscript.NewIPXE(root)
	if err != nil {
		b.Fatal(err)
	}
	snap := st.Current()
	var buf bytes.Buffer
	i := 0
	for b.Loop() {
		n := snap.Nodes.List[i%len(snap.Nodes.List)]
		i++
		buf.Reset()
		if _, err := tm.Render(&buf, snap, n, n.Primary().HWAddr); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "bytes/script")
}

func builder(b *testing.B, root string) (*artifact.Builder, *config.Snapshot) {
	st, err := config.NewStore(root, quiet())
	if err != nil {
		b.Fatal(err)
	}
	bl, err := artifact.New(artifact.Options{Root: root, Log: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	return bl, st.Current()
}

// BenchmarkRuntimeOverlayHit is a runtime-overlay lookup when every node's
// overlay is built: the overlay tree check (fingerprint), cache keys, lookup.
func BenchmarkRuntimeOverlayHit(b *testing.B) {
	bl, snap := builder(b, tree(b, 1000))
	ctx := context.Background()
	warm(b, bl, snap)
	i := 0
	cpu := cpuTime()
	defer reportCPU(b, cpu)
	for b.Loop() {
		n := snap.Nodes.List[i%len(snap.Nodes.List)]
		i++
		if _, err := bl.RuntimeOverlay(ctx, snap, n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKernelLookup is the per-request kernel lookup (rootfs/boot scan).
func BenchmarkKernelLookup(b *testing.B) {
	bl, snap := builder(b, tree(b, 10))
	ctx := context.Background()
	n := snap.Nodes.List[0]
	for b.Loop() {
		if _, err := bl.Kernel(ctx, snap, n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkArtifactOpen opens and closes a built runtime overlay.
func BenchmarkArtifactOpen(b *testing.B) {
	bl, snap := builder(b, tree(b, 10))
	a, err := bl.RuntimeOverlay(context.Background(), snap, snap.Nodes.List[0])
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		f, err := a.Open()
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// BenchmarkStatusJSON10k encodes /status for 10,000 seen nodes (cache
// defeated: one event before every call).
func BenchmarkStatusJSON10k(b *testing.B) {
	nodes, err := config.LoadNodes(filepath.Join(tree(b, 10000), config.NodesFile))
	if err != nil {
		b.Fatal(err)
	}
	s := status.New(quiet())
	s.CacheAge = 0
	for _, n := range nodes.List {
		s.Record(status.Event{MAC: n.Primary().HWAddr, Node: n.Name, IP: n.Primary().IPAddr, Stage: status.StageIPXE, Sent: "ipxe"})
	}
	var size int
	i := 0
	for b.Loop() {
		n := nodes.List[i%len(nodes.List)]
		i++
		s.Record(status.Event{MAC: n.Primary().HWAddr, Node: n.Name, Stage: status.StageKernel, Sent: "vmlinuz", Time: time.Unix(int64(i), 0)})
		data, err := s.JSON(nodes)
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	}
	b.ReportMetric(float64(size), "bytes/report")
}

// builderAdapter is serve's adapter (server/cmd/wwserver), repeated here.
type builderAdapter struct{ b *artifact.Builder }

func conv(a *artifact.Artifact, err error) (*provision.Artifact, error) {
	if err != nil {
		return nil, err
	}
	return &provision.Artifact{Name: a.Name, ETag: a.ETag, Size: a.Size, ModTime: a.ModTime, Open: a.Open}, nil
}

func (a builderAdapter) Kernel(ctx context.Context, s *config.Snapshot, n *config.Node) (*provision.Artifact, error) {
	return conv(a.b.Kernel(ctx, s, n))
}

func (a builderAdapter) Image(ctx context.Context, s *config.Snapshot, n *config.Node) (*provision.Artifact, error) {
	return conv(a.b.Image(ctx, s, n))
}

func (a builderAdapter) SystemOverlay(ctx context.Context, s *config.Snapshot, n *config.Node) (*provision.Artifact, error) {
	return conv(a.b.SystemOverlay(ctx, s, n))
}

func (a builderAdapter) RuntimeOverlay(ctx context.Context, s *config.Snapshot, n *config.Node) (*provision.Artifact, error) {
	return conv(a.b.RuntimeOverlay(ctx, s, n))
}

// warm builds what every node is served, as the server's first requests do
// (BuildAll stores the shared parts only; a server builds per-node parts on
// request).
func warm(b *testing.B, bl *artifact.Builder, snap *config.Snapshot) {
	ctx := context.Background()
	if _, err := bl.BuildAll(ctx, snap, 2); err != nil {
		b.Fatal(err)
	}
	for _, n := range snap.Nodes.List {
		if _, err := bl.SystemOverlay(ctx, snap, n); err != nil {
			b.Fatal(err)
		}
		if _, err := bl.RuntimeOverlay(ctx, snap, n); err != nil {
			b.Fatal(err)
		}
	}
}

func handler(b *testing.B, n int) (http.Handler, *config.Nodes) {
	root := tree(b, n)
	st, err := config.NewStore(root, quiet())
	if err != nil {
		b.Fatal(err)
	}
	bl, err := artifact.New(artifact.Options{Root: root, Log: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	warm(b, bl, st.Current())
	h, err := provision.New(provision.Options{Config: st, Builder: builderAdapter{bl}, Status: status.New(quiet()), Log: quiet(),
		FreshEvery: provision.DefaultFreshEvery}) // as serve
	if err != nil {
		b.Fatal(err)
	}
	return h, st.Current().Nodes
}

// discard is a ResponseWriter that keeps nothing (httptest.ResponseRecorder
// would keep every body).
type discard struct {
	h    http.Header
	code int
	n    int
}

func (d *discard) Header() http.Header { return d.h }
func (d *discard) WriteHeader(c int)   { d.code = c }
func (d *discard) Write(p []byte) (int, error) {
	if d.code == 0 {
		d.code = 200
	}
	d.n += len(p)
	return len(p), nil
}
func (d *discard) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(struct{ io.Writer }{d}, r)
	return n, err
}

func benchRoute(b *testing.B, path string) {
	h, nodes := handler(b, 1000)
	reqs := make([]*http.Request, len(nodes.List))
	for i, n := range nodes.List {
		reqs[i] = httptest.NewRequest(http.MethodGet, strings.ReplaceAll(path, "{mac}", n.Primary().HWAddr), nil)
		reqs[i].RemoteAddr = "127.0.0.1:700"
	}
	w := &discard{h: http.Header{}}
	i := 0
	for b.Loop() {
		clear(w.h)
		w.code, w.n = 0, 0
		h.ServeHTTP(w, reqs[i%len(reqs)])
		i++
		if w.code != 200 {
			b.Fatalf("%s: status %d", reqs[i-1].URL, w.code)
		}
	}
	b.ReportMetric(float64(w.n), "bytes/resp")
}

// Whole handlers, no network: what one request costs the server besides
// net/http and the socket.
func BenchmarkHandlerIPXE(b *testing.B)    { benchRoute(b, "/ipxe/{mac}") }
func BenchmarkHandlerRuntime(b *testing.B) { benchRoute(b, "/overlay/runtime/{mac}") }
func BenchmarkHandlerStatus(b *testing.B)  { benchRoute(b, "/status") }

// TestTree checks that the benchmark tree loads (so the benchmarks' setup is
// exercised by go test, which does not run benchmarks).
func TestTree(t *testing.T) {
	root := tree(t, 3)
	nodes, err := config.LoadNodes(filepath.Join(root, config.NodesFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.List) != 3 || nodes.List[0].Name != "n00001" || nodes.List[2].Primary().HWAddr != gen.MAC(3) {
		t.Fatalf("nodes: %v", fmt.Sprint(nodes.List[0].Name, len(nodes.List)))
	}
}

// BenchmarkLoadNodes10k parses and resolves a 10,000-node nodes.toml, the
// bulk of wwserver's start-up time with that many nodes.
func BenchmarkLoadNodes10k(b *testing.B) {
	path := filepath.Join(tree(b, 10000), config.NodesFile)
	for b.Loop() {
		if _, err := config.LoadNodes(path); err != nil {
			b.Fatal(err)
		}
	}
}

// writeSmallFiles adds n small files to rootfs, 100 per directory, two
// directory levels deep (about the shape of a distribution's /usr).
func writeSmallFiles(tb testing.TB, rootfs string, n int) {
	tb.Helper()
	for i := range n {
		dir := filepath.Join(rootfs, "usr", fmt.Sprintf("d%03d", i/10000), fmt.Sprintf("d%03d", i/100%100))
		if i%100 == 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				tb.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i%100)), []byte(fmt.Sprintf("file %d\n", i)), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkHandlerImageRange67k is a one-byte Range request on /image of an
// image with 67,000 files, the image already built: "watched" is the server
// as it runs (inotify watches spare the walk of an unchanged tree),
// "walked" a Builder without watches (Close), which walks the whole image
// tree on every request, as every request did before the watches.
func BenchmarkHandlerImageRange67k(b *testing.B) {
	root := tree(b, 10)
	writeSmallFiles(b, filepath.Join(root, "images", "default", "rootfs"), 67000)
	st, err := config.NewStore(root, quiet())
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"watched", "walked"} {
		b.Run(mode, func(b *testing.B) {
			bl, err := artifact.New(artifact.Options{Root: root, Log: quiet()})
			if err != nil {
				b.Fatal(err)
			}
			defer bl.Close()
			if mode == "walked" {
				bl.Close()
			}
			h, err := provision.New(provision.Options{Config: st, Builder: builderAdapter{bl}, Status: status.New(quiet()), Log: quiet(),
				FreshEvery: provision.DefaultFreshEvery}) // as serve
			if err != nil {
				b.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodGet, "/image/"+st.Current().Nodes.List[0].Primary().HWAddr, nil)
			req.RemoteAddr = "127.0.0.1:700"
			req.Header.Set("Range", "bytes=0-0")
			w := &discard{h: http.Header{}}
			serve := func() {
				clear(w.h)
				w.code, w.n = 0, 0
				h.ServeHTTP(w, req)
				if w.code != http.StatusPartialContent || w.n != 1 {
					b.Fatalf("status %d, %d bytes", w.code, w.n)
				}
			}
			serve() // builds the image (or finds it built)
			cpu := cpuTime()
			for b.Loop() {
				serve()
			}
			reportCPU(b, cpu)
		})
	}
}

// cpuTime is the CPU time (user + system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time per operation since start: on a
// shared machine it says more than the wall time.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/1e3/float64(b.N), "cpu-µs/op")
}
