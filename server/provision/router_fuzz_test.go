package provision

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wwcluster/ww/server/config"
)

// fuzzSecret is in a file outside the iPXE directory (reachable only by
// escaping it) and is node n001's asset key: no response may carry it
// unless the request itself did (error messages may echo a request).
const fuzzSecret = "s3cret"

// newFuzzHandler builds a Handler like newEnv does, for a testing.F.
func newFuzzHandler(f *testing.F, secure bool, ipxeDir string) *Handler {
	srvText := fmt.Sprintf("address = \"10.0.2.1\"\nsecure = %v\n[tftp]\ndir = %q\n", secure, ipxeDir)
	srv, err := config.ParseServer("wwserver.toml", []byte(srvText))
	if err != nil {
		f.Fatal(err)
	}
	nodes, err := config.ParseNodes("nodes.toml", []byte(testNodes))
	if err != nil {
		f.Fatal(err)
	}
	cfg := &fakeConfig{root: f.TempDir()}
	cfg.snap.Store(&config.Snapshot{Server: srv, Nodes: nodes, LoadedAt: time.Now()})
	h, err := New(Options{Config: cfg, Builder: newFakeBuilder(), Status: &fakeStatus{},
		Registry: prometheus.NewRegistry(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	return h
}

// FuzzRouter sends arbitrary HTTP requests (parsed by net/http, as the
// server does) through the whole router, secure mode or not, from a
// privileged port or not. Invariants: no handler panic (the recoverer
// would hide it as a 500), no 5xx, every refusal has a reason in its body,
// and no response leaks a file outside the iPXE directory or an asset key.
func FuzzRouter(f *testing.F) {
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "snponly.efi"), []byte("EFI-BINARY"), 0o644); err != nil {
		f.Fatal(err)
	}
	outside := filepath.Join(f.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte(fuzzSecret), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
		f.Fatal(err)
	}
	handlers := [2]*Handler{newFuzzHandler(f, false, dir), newFuzzHandler(f, true, dir)}

	for _, req := range []string{
		"GET /ipxe/52:54:00:00:00:01 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /ipxe/52-54-00-00-00-99 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /kernel/52:54:00:00:00:02 HTTP/1.1\r\nHost: x\r\nRange: bytes=3-1,5-\r\n\r\n",
		"GET /image/52:54:00:00:00:01 HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"x\"\r\n\r\n",
		"GET /overlay/runtime/52:54:00:00:00:01 HTTP/1.1\r\nHost: x\r\nX-Asset-Key: wrong\r\n\r\n",
		"GET /overlay/system/52:54:00:00:00:03 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /provision/52:54:00:00:00:01?stage=runtime&assetkey=%00 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /heartbeat/52:54:00:00:00:02 HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n{\"uptime\":\"1e999\"}",
		"GET /ipxe-bin/escape HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /ipxe-bin/..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /ipxe-bin/snponly.efi HTTP/1.1\r\nHost: x\r\nRange: bytes=-1\r\n\r\n",
		"GET /status?json=1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
		"DELETE /ipxe/52:54:00:00:00:01 HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(req), false, uint16(600))
		f.Add([]byte(req), true, uint16(40000))
	}
	f.Fuzz(func(t *testing.T, raw []byte, secure bool, port uint16) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return // refused by net/http before any handler runs
		}
		r.RemoteAddr = fmt.Sprintf("10.0.2.11:%d", port)
		h := handlers[0]
		if secure {
			h = handlers[1]
		}
		panics := counterOf(h.metrics.errors.WithLabelValues("panic"))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if got := counterOf(h.metrics.errors.WithLabelValues("panic")); got != panics {
			t.Fatalf("%q: handler panicked", raw)
		}
		code, body := w.Code, w.Body.Bytes()
		if code >= 500 {
			t.Fatalf("%q: %d %q", raw, code, body)
		}
		// (ServeMux itself answers a bare 400 to "*", the OPTIONS-only URI;
		// 412 is If-Match doing its job, like a 304.)
		bare := r.Method == http.MethodHead || r.RequestURI == "*" || code == http.StatusPreconditionFailed
		if code >= 400 && !bare && len(bytes.TrimSpace(body)) == 0 {
			t.Errorf("%q: %d with no reason", raw, code)
		}
		if bytes.Contains(body, []byte(fuzzSecret)) && !strings.Contains(string(raw), fuzzSecret) {
			t.Fatalf("%q: response leaks the secret: %d %q", raw, code, body)
		}
	})
}

func counterOf(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
