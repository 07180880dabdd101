package provision

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/status"
)

// BenchmarkIPXEScript is one iPXE script request through the whole handler
// (routes, metrics, status store), over 1,000 nodes in turn, single-stage
// and two-stage (the default boot), without the network: what wwserver
// spends per script on top of net/http and the kernel's TCP, which
// tools/bench/rounds.sh measures against nginx. (The fake two-stage builder
// answers at once: the real one's cost shows in rounds.sh's ipxe2 row.)
func BenchmarkIPXEScript(b *testing.B) {
	for _, boot := range []string{"initrd", "twostage"} {
		b.Run(boot, func(b *testing.B) {
			const n = 1000
			var nodes strings.Builder
			nodes.WriteString("[profiles.default]\nimage = \"debian\"\nkernel_args = [\"console=ttyS0\"]\nsystem_overlays = [\"wwinit\"]\nruntime_overlays = [\"generic\"]\n")
			macs := make([]string, n)
			for i := range n {
				macs[i] = fmt.Sprintf("52:54:01:00:%02x:%02x", i>>8, i&0xff)
				fmt.Fprintf(&nodes, "[nodes.n%04d]\nprofiles = [\"default\"]\nboot = %q\n[nodes.n%04d.network.eth0]\nhwaddr = %q\nipaddr = \"10.0.%d.%d\"\n", i, boot, i, macs[i], 3+i/250, 1+i%250)
			}
			cfg := newFakeConfig(b, false, "")
			parsed, err := config.ParseNodes("nodes.toml", []byte(nodes.String()))
			if err != nil {
				b.Fatal(err)
			}
			snap := *cfg.snap.Load()
			snap.Nodes = parsed
			cfg.snap.Store(&snap)
			var builder Builder = newFakeBuilder()
			if boot == "twostage" {
				builder = &twoStageFake{fakeBuilder: newFakeBuilder(), index: []byte("an index")}
			}
			h, err := New(Options{Config: cfg, Builder: builder, Status: status.New(slog.New(slog.DiscardHandler)), Registry: prometheus.NewRegistry(),
				Log: newTestLogger(io.Discard), FreshEvery: DefaultFreshEvery})
			if err != nil {
				b.Fatal(err)
			}
			reqs := make([]*http.Request, n)
			for i, mac := range macs {
				reqs[i] = httptest.NewRequest(http.MethodGet, "/ipxe/"+mac, nil)
				reqs[i].RemoteAddr = "10.0.2.15:4000"
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				clear(w.h)
				w.code = 0
				h.ServeHTTP(w, reqs[i%n])
				if w.code != http.StatusOK {
					b.Fatalf("%s: %d", reqs[i%n].URL, w.code)
				}
			}
		})
	}
}

// discardWriter is an http.ResponseWriter that keeps only the status code.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header { return d.h }
func (d *discardWriter) WriteHeader(code int) {
	if d.code == 0 {
		d.code = code
	}
}
func (d *discardWriter) Write(p []byte) (int, error) {
	d.WriteHeader(http.StatusOK)
	return len(p), nil
}
