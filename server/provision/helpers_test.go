package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/status"
)

const testNodes = `
[profiles.default]
image = "debian"
boot = "initrd"
kernel_args = ["console=ttyS0", "quiet"]
system_overlays = ["wwinit"]
runtime_overlays = ["generic"]

[nodes.n001]
profiles = ["default"]
asset_key = "s3cret"
[nodes.n001.network.eth0]
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.0.2.11"

[nodes.n002]
profiles = ["default"]
[nodes.n002.network.eth0]
hwaddr = "52:54:00:00:00:02"
ipaddr = "10.0.2.12"

[nodes.n003]
profiles = ["default"]
ipxe_template = "custom"
root = "initramfs"
[nodes.n003.network.eth0]
hwaddr = "52:54:00:00:00:03"
`

const (
	macN001 = "52:54:00:00:00:01"
	macN002 = "52:54:00:00:00:02"
	macN003 = "52:54:00:00:00:03"
	macNone = "52:54:00:00:00:99"
)

// fakeConfig is a Config with a fixed snapshot.
type fakeConfig struct {
	root string
	snap atomic.Pointer[config.Snapshot]
	err  atomic.Pointer[error]
}

func (f *fakeConfig) Fresh() *config.Snapshot { return f.snap.Load() }
func (f *fakeConfig) Root() string            { return f.root }
func (f *fakeConfig) LastError() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

func newFakeConfig(t testing.TB, secure bool, extraServer string) *fakeConfig {
	t.Helper()
	srvText := fmt.Sprintf("address = \"10.0.2.1\"\nsecure = %v\n%s", secure, extraServer)
	srv, err := config.ParseServer("wwserver.toml", []byte(srvText))
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := config.ParseNodes("nodes.toml", []byte(testNodes))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeConfig{root: t.TempDir()}
	f.snap.Store(&config.Snapshot{Server: srv, Nodes: nodes, LoadedAt: time.Now()})
	return f
}

// fakeBuilder serves fixed content per stage; err or panic make it fail.
type fakeBuilder struct {
	mu      sync.Mutex
	content map[string][]byte // stage → content
	err     error
	panic   bool
	delay   time.Duration
	calls   map[string]int
	ctxErr  error // ctx.Err() seen after delay
}

func newFakeBuilder() *fakeBuilder {
	return &fakeBuilder{content: map[string][]byte{
		"kernel":  []byte("KERNEL-0123456789abcdef"),
		"image":   []byte("IMAGE-" + string(bytes.Repeat([]byte("i"), 1000))),
		"system":  []byte("SYSTEM-overlay-bytes"),
		"runtime": []byte("RUNTIME-overlay-bytes"),
	}, calls: map[string]int{}}
}

func (f *fakeBuilder) get(ctx context.Context, stage, name string, n *config.Node) (*Artifact, error) {
	f.mu.Lock()
	f.calls[stage]++
	err, pan, delay := f.err, f.panic, f.delay
	data := append([]byte(stage+"/"+n.Name+":"), f.content[stage]...)
	f.mu.Unlock()
	if pan {
		panic("fake builder panic")
	}
	if delay > 0 {
		time.Sleep(delay) // simulates a slow build, not synchronisation
		f.mu.Lock()
		f.ctxErr = ctx.Err()
		f.mu.Unlock()
	}
	if err != nil {
		return nil, err
	}
	return &Artifact{
		Name:    name,
		ETag:    fmt.Sprintf("%s-%s-%d", stage, n.Name, len(data)),
		Size:    int64(len(data)),
		ModTime: time.Unix(1700000000, 0),
		Open: func() (io.ReadSeekCloser, error) {
			return nopCloser{bytes.NewReader(data)}, nil
		},
	}, nil
}

func (f *fakeBuilder) Kernel(ctx context.Context, _ *config.Snapshot, n *config.Node) (*Artifact, error) {
	return f.get(ctx, "kernel", "vmlinuz-6.1.0-1-amd64", n)
}
func (f *fakeBuilder) Image(ctx context.Context, _ *config.Snapshot, n *config.Node) (*Artifact, error) {
	return f.get(ctx, "image", "__IMAGE__.img.gz", n)
}
func (f *fakeBuilder) SystemOverlay(ctx context.Context, _ *config.Snapshot, n *config.Node) (*Artifact, error) {
	return f.get(ctx, "system", "__SYSTEM__.img.gz", n)
}
func (f *fakeBuilder) RuntimeOverlay(ctx context.Context, _ *config.Snapshot, n *config.Node) (*Artifact, error) {
	return f.get(ctx, "runtime", "__RUNTIME__.img.gz", n)
}

// set changes the fake under its lock.
func (f *fakeBuilder) set(fn func(*fakeBuilder)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeBuilder) callCount(stage string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[stage]
}

type nopCloser struct{ io.ReadSeeker }

func (nopCloser) Close() error { return nil }

type heartbeatRec struct {
	node, mac, ip string
	hb            status.Heartbeat
}

// fakeStatus records what the handlers report.
type fakeStatus struct {
	mu       sync.Mutex
	events   []status.Event
	hbs      []heartbeatRec
	interval time.Duration
	jsonErr  error
}

func (f *fakeStatus) Record(ev status.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
}

func (f *fakeStatus) RecordHeartbeat(node, mac, ip string, hb status.Heartbeat) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hbs = append(f.hbs, heartbeatRec{node, mac, ip, hb})
}

func (f *fakeStatus) JSON(nodes *config.Nodes) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.jsonErr != nil {
		return nil, f.jsonErr
	}
	return fmt.Appendf(nil, `{"nodes":%d,"events":%d}`, len(nodes.List), len(f.events)), nil
}

func (f *fakeStatus) SetUpdateInterval(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.interval = d
}

func (f *fakeStatus) all() []status.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]status.Event(nil), f.events...)
}

// counts returns how many events and heartbeats were recorded.
func (f *fakeStatus) counts() (events, heartbeats int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.events), len(f.hbs)
}

func (f *fakeStatus) last(t *testing.T) status.Event {
	t.Helper()
	evs := f.all()
	if len(evs) == 0 {
		t.Fatal("no status event recorded")
	}
	return evs[len(evs)-1]
}

type env struct {
	t       *testing.T
	cfg     *fakeConfig
	builder *fakeBuilder
	status  *fakeStatus
	reg     *prometheus.Registry
	h       *Handler
	srv     *httptest.Server
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t *testing.T, secure bool) *env {
	t.Helper()
	e := &env{t: t, cfg: newFakeConfig(t, secure, ""), builder: newFakeBuilder(), status: &fakeStatus{},
		reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	h, err := New(Options{Config: e.cfg, Builder: e.builder, Status: e.status, Registry: e.reg,
		Log: newTestLogger(e.logs)})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

// do sends a request and returns the response with its body read.
func (e *env) do(method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, data
}

func (e *env) get(path string, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	return e.do(http.MethodGet, path, nil, hdr...)
}

func wantCode(t *testing.T, resp *http.Response, body []byte, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d; body: %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, code, body)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

var errBoom = errors.New("boom")
