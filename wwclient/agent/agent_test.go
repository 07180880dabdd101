package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/wwcluster/ww/server/nodeapi"
)

const testMAC = "52:54:00:00:00:01"

func overlay(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	w := cpio.NewWriter(zw)
	for name, body := range files {
		if err := w.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeReg | 0o644, Size: int64(len(body)), ModTime: time.Unix(1700000000, 0), Uid: os.Geteuid(), Guid: os.Getegid()}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fakeServer is a minimal wwserver: heartbeat and runtime overlay.
type fakeServer struct {
	t          *testing.T
	mu         sync.Mutex
	heartbeats []nodeapi.HeartbeatMessage
	hbQueries  []url.Values
	gets       []string // If-None-Match of each GET
	overlay    []byte
	etag       string
	failFirst  int // answer 503 to this many requests
	requests   int
	secure     bool // require source port < 1024 and asset key
	assetKey   string
	hbSeen     chan struct{}
	getSeen    chan struct{}
}

func newFakeServer(t *testing.T) (*fakeServer, *httptest.Server) {
	fs := &fakeServer{t: t, hbSeen: make(chan struct{}, 100), getSeen: make(chan struct{}, 100)}
	fs.setOverlay(overlay(t, map[string]string{"etc/motd": "hello v1\n"}), `"v1"`)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /heartbeat/{mac}", fs.heartbeat)
	mux.HandleFunc("GET /overlay/runtime/{mac}", fs.runtime)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return fs, srv
}

func (f *fakeServer) setOverlay(b []byte, etag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.overlay, f.etag = b, etag
}

func (f *fakeServer) gate(w http.ResponseWriter, r *http.Request) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if f.requests <= f.failFirst {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return false
	}
	if r.PathValue("mac") != testMAC {
		http.Error(w, "unknown node", http.StatusNotFound)
		return false
	}
	if f.secure {
		_, port, _ := net.SplitHostPort(r.RemoteAddr)
		if p, _ := strconv.Atoi(port); p >= 1024 {
			http.Error(w, "INSECURE_PORT", http.StatusForbidden)
			return false
		}
		if r.URL.Query().Get("assetkey") != f.assetKey {
			http.Error(w, "BAD_ASSET", http.StatusForbidden)
			return false
		}
	}
	return true
}

func (f *fakeServer) heartbeat(w http.ResponseWriter, r *http.Request) {
	if !f.gate(w, r) {
		return
	}
	var hb nodeapi.HeartbeatMessage
	if err := json.NewDecoder(r.Body).Decode(&hb); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.heartbeats = append(f.heartbeats, hb)
	f.hbQueries = append(f.hbQueries, r.URL.Query())
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
	f.hbSeen <- struct{}{}
}

func (f *fakeServer) runtime(w http.ResponseWriter, r *http.Request) {
	if !f.gate(w, r) {
		return
	}
	defer func() { f.getSeen <- struct{}{} }()
	f.mu.Lock()
	defer f.mu.Unlock()
	inm := r.Header.Get("If-None-Match")
	f.gets = append(f.gets, inm)
	w.Header().Set("ETag", f.etag)
	if inm == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(f.overlay)))
	w.Write(f.overlay)
}

func fakeProc(t *testing.T) string {
	d := t.TempDir()
	if err := os.MkdirAll(filepath.Join(d, "sys/kernel/random"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d, "uptime"), []byte("1234.56 2000.00\n"), 0o644)
	os.WriteFile(filepath.Join(d, "sys/kernel/random/boot_id"), []byte("0e6c1f6a-1111-2222-3333-444455556666\n"), 0o644)
	return d
}

func newAgent(t *testing.T, srv *httptest.Server, mod func(*Options)) (*Agent, string) {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	root := t.TempDir()
	o := Options{Server: u, MAC: testMAC, Node: "n001", Root: root, Version: "1.2.3", ProcDir: fakeProc(t), Interval: time.Minute}
	if mod != nil {
		mod(&o)
	}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return a, o.Root
}

func TestSyncHeartbeatThen200Then304(t *testing.T) {
	fs, srv := newFakeServer(t)
	a, root := newAgent(t, srv, nil)
	ctx := context.Background()

	res, err := a.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.ETag != `"v1"` || res.Apply.Written != 1 {
		t.Fatalf("first sync: %+v", res)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "etc/motd")); string(got) != "hello v1\n" {
		t.Fatalf("applied file: %q", got)
	}
	res, err = a.Sync(ctx)
	if err != nil || res.Changed {
		t.Fatalf("second sync: %+v %v", res, err)
	}
	// the server changes the overlay
	fs.setOverlay(overlay(t, map[string]string{"etc/motd": "hello v2\n"}), `"v2"`)
	if res, err = a.Sync(ctx); err != nil || !res.Changed || a.ETag() != `"v2"` {
		t.Fatalf("third sync: %+v %v", res, err)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "etc/motd")); string(got) != "hello v2\n" {
		t.Fatalf("updated file: %q", got)
	}

	fs.mu.Lock()
	defer fs.mu.Unlock()
	if want := []string{"", `"v1"`, `"v1"`}; strings.Join(fs.gets, ",") != strings.Join(want, ",") {
		t.Fatalf("If-None-Match sent: %q want %q", fs.gets, want)
	}
	if len(fs.heartbeats) != 3 {
		t.Fatalf("heartbeats: %d", len(fs.heartbeats))
	}
	hb := fs.heartbeats[0]
	want := nodeapi.HeartbeatMessage{Node: "n001", AgentState: nodeapi.AgentState{Version: "1.2.3", UptimeSeconds: 1234, BootID: "0e6c1f6a-1111-2222-3333-444455556666", RuntimeETag: ""}}
	if hb != want {
		t.Fatalf("heartbeat %+v want %+v", hb, want)
	}
	if fs.heartbeats[1].RuntimeETag != `"v1"` || fs.heartbeats[2].RuntimeETag != `"v1"` {
		t.Fatalf("runtime_etag not reported: %+v", fs.heartbeats)
	}
	if fs.hbQueries[0].Has("assetkey") {
		t.Fatal("assetkey sent without one configured")
	}
}

func TestSyncErrors(t *testing.T) {
	fs, srv := newFakeServer(t)
	// unknown MAC: 404 with the server's text
	a, _ := newAgent(t, srv, func(o *Options) { o.MAC = "52:54:00:00:00:99" })
	_, err := a.Sync(context.Background())
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 404 || se.Body != "unknown node" || se.Op != "heartbeat" {
		t.Fatalf("err %v", err)
	}
	// broken overlay: error, ETag not recorded
	fs.setOverlay([]byte("garbage"), `"bad"`)
	a, _ = newAgent(t, srv, nil)
	if _, err := a.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "apply runtime overlay") {
		t.Fatalf("err %v", err)
	}
	if a.ETag() != "" {
		t.Fatal("ETag recorded for a failed apply")
	}
	// server down: connection refused
	srv.Close()
	if _, err := a.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "heartbeat") {
		t.Fatalf("server down: %v", err)
	}
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without server")
	}
	u, _ := url.Parse("http://x")
	if _, err := New(Options{Server: u, Root: "/"}); err == nil {
		t.Fatal("New without MAC")
	}
}

func TestETagPersisted(t *testing.T) {
	_, srv := newFakeServer(t)
	state := t.TempDir()
	a, root := newAgent(t, srv, func(o *Options) { o.StateDir = state })
	if _, err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, _ := newAgent(t, srv, func(o *Options) { o.StateDir = state; o.Root = root })
	if b.ETag() != `"v1"` {
		t.Fatalf("reloaded ETag %q", b.ETag())
	}
	c, _ := newAgent(t, srv, func(o *Options) { o.StateDir = state }) // another root
	if c.ETag() != "" {
		t.Fatalf("ETag of another root used: %q", c.ETag())
	}
}

// recorder is a slog handler that keeps the records.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }
func (r *recorder) count(level slog.Level, msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.Level == level && rec.Message == msg {
			n++
		}
	}
	return n
}

func TestRunBacksOffThenRecovers(t *testing.T) {
	fs, srv := newFakeServer(t)
	fs.failFirst = 4 // four failed syncs (the heartbeat answers 503)
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		waits   []time.Duration
		notices []string
	)
	a, root := newAgent(t, srv, func(o *Options) {
		o.Logger = slog.New(rec)
		o.Interval = 60 * time.Second
		o.Notify = func(s string) error { notices = append(notices, s); return nil }
		o.After = func(d time.Duration) <-chan time.Time {
			waits = append(waits, d)
			if len(waits) == 7 {
				cancel()
			}
			ch := make(chan time.Time, 1)
			ch <- time.Now() // fire at once: the test observes, never sleeps
			return ch
		}
	})
	if err := a.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if len(waits) != 7 {
		t.Fatalf("waits %v", waits)
	}
	// failures: equal-jitter backoff 1 s, 2 s, 4 s, 8 s ceilings
	for i, ceil := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		if waits[i] < ceil/2 || waits[i] > ceil {
			t.Errorf("backoff %d: %v outside [%v, %v]", i, waits[i], ceil/2, ceil)
		}
	}
	// then the interval with ±10 % jitter
	for i := 4; i < 7; i++ {
		if waits[i] < 54*time.Second || waits[i] > 66*time.Second {
			t.Errorf("interval wait %d: %v outside 54-66 s", i, waits[i])
		}
	}
	if n := rec.count(slog.LevelWarn, "server unreachable, retrying with backoff"); n != 1 {
		t.Errorf("outage logged %d times, want once", n)
	}
	if n := rec.count(slog.LevelInfo, "server reachable again"); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
	if len(notices) != 1 || !strings.HasPrefix(notices[0], "READY=1\nSTATUS=server unreachable") {
		t.Errorf("notify: %q", notices)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "etc/motd")); string(got) != "hello v1\n" {
		t.Errorf("overlay not applied after recovery: %q", got)
	}
}

func TestRunBackoffCappedAtInterval(t *testing.T) {
	_, srv := newFakeServer(t)
	srv.Close() // down for good
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits []time.Duration
	rec := &recorder{}
	a, _ := newAgent(t, srv, func(o *Options) {
		o.Interval = 10 * time.Second
		o.Logger = slog.New(rec)
		o.After = func(d time.Duration) <-chan time.Time {
			waits = append(waits, d)
			if len(waits) == 12 {
				cancel()
			}
			ch := make(chan time.Time, 1)
			ch <- time.Time{}
			return ch
		}
	})
	if err := a.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for i, w := range waits {
		if w > 10*time.Second || w <= 0 {
			t.Fatalf("wait %d = %v exceeds the interval cap", i, w)
		}
	}
	if waits[len(waits)-1] < 5*time.Second {
		t.Fatalf("backoff did not grow to the cap: %v", waits)
	}
	if n := rec.count(slog.LevelWarn, "server unreachable, retrying with backoff"); n != 1 {
		t.Fatalf("outage logged %d times", n)
	}
}

func TestRunTriggerSyncsNow(t *testing.T) {
	fs, srv := newFakeServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	never := make(chan time.Time) // the interval never elapses
	a, _ := newAgent(t, srv, func(o *Options) {
		o.After = func(time.Duration) <-chan time.Time { return never }
	})
	trigger := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, trigger) }()
	<-fs.getSeen // first sync is immediate
	trigger <- struct{}{}
	<-fs.getSeen // SIGHUP: second sync without waiting
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.heartbeats) != 2 || len(fs.gets) != 2 || fs.gets[1] != `"v1"` {
		t.Fatalf("heartbeats %d gets %q", len(fs.heartbeats), fs.gets)
	}
}

func TestSecureMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("secure mode binds privileged ports: needs root")
	}
	fs, srv := newFakeServer(t)
	fs.secure, fs.assetKey = true, "k e y&1"
	// insecure client: refused
	a, _ := newAgent(t, srv, func(o *Options) { o.AssetKey = "k e y&1" })
	var se *StatusError
	if _, err := a.Sync(context.Background()); !errors.As(err, &se) || se.Status != 403 || se.Body != "INSECURE_PORT" {
		t.Fatalf("insecure: %v", err)
	}
	// privileged port, wrong key
	a, _ = newAgent(t, srv, func(o *Options) {
		o.HTTPClient = NewHTTPClient(ClientOptions{Secure: true, PortMin: 900, PortMax: 1023})
		o.AssetKey = "wrong"
	})
	if _, err := a.Sync(context.Background()); !errors.As(err, &se) || se.Body != "BAD_ASSET" {
		t.Fatalf("bad key: %v", err)
	}
	// privileged port and key: works, for several syncs in a row
	a, root := newAgent(t, srv, func(o *Options) {
		o.HTTPClient = NewHTTPClient(ClientOptions{Secure: true, PortMin: 900, PortMax: 1023})
		o.AssetKey = "k e y&1"
	})
	for i := 0; i < 5; i++ {
		if _, err := a.Sync(context.Background()); err != nil {
			t.Fatalf("secure sync %d: %v", i, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/motd")); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if q := fs.hbQueries[len(fs.hbQueries)-1]; q.Get("assetkey") != "k e y&1" {
		t.Fatalf("assetkey query %v", q)
	}
}

func TestPrivilegedDialerSkipsBusyPorts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to bind ports < 1024")
	}
	// find two adjacent free privileged ports and occupy the upper one
	var busy net.Listener
	var p int
	for p = 1023; p > 700; p-- {
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		if free, err := net.Listen("tcp", ":"+strconv.Itoa(p-1)); err == nil {
			free.Close()
			busy = l
			break
		}
		l.Close()
	}
	if busy == nil {
		t.Skip("no two adjacent free privileged ports")
	}
	defer busy.Close()
	dial := PrivilegedDialer(net.Dialer{Timeout: 5 * time.Second}, p-1, p)
	for i := 0; i < 4; i++ { // random start: both orders get exercised
		// a new destination each time: a closed connection leaves the
		// 4-tuple in TIME_WAIT, which the dialer would (rightly) skip
		srv := httptest.NewServer(http.NotFoundHandler())
		c, err := dial(context.Background(), "tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if got := c.LocalAddr().(*net.TCPAddr).Port; got != p-1 {
			t.Fatalf("bound port %d, want %d (the only free one)", got, p-1)
		}
		c.Close()
		srv.Close()
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	dial = PrivilegedDialer(net.Dialer{Timeout: 5 * time.Second}, p, p)
	if _, err := dial(context.Background(), "tcp", srv.Listener.Addr().String()); !errors.Is(err, ErrNoSourcePort) {
		t.Fatalf("all ports busy: %v", err)
	}
	// other errors end at once: nothing listens on a closed listener's port
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	dial = PrivilegedDialer(net.Dialer{Timeout: 5 * time.Second}, 900, 1000)
	if _, err := dial(context.Background(), "tcp", addr); err == nil || errors.Is(err, ErrNoSourcePort) {
		t.Fatalf("refused: %v", err)
	}
}

// A host with several addresses (bootstorm's simulated nodes) binds the
// privileged port on the address it asks for.
func TestPrivilegedDialerKeepsLocalIP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to bind ports < 1024")
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	local := net.IPv4(127, 0, 0, 2) // loopback: every 127/8 address is local
	dial := PrivilegedDialer(net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: local}}, 600, 1023)
	c, err := dial(context.Background(), "tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	la := c.LocalAddr().(*net.TCPAddr)
	if !la.IP.Equal(local) || la.Port < 600 || la.Port > 1023 {
		t.Fatalf("bound %s, want %s on a port in 600-1023", la, local)
	}
}

func TestLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "wwclient.lock")
	f, err := Lock(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(p); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	if b, _ := os.ReadFile(p); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("pid in lock file: %q", b)
	}
	f.Close()
	g, err := Lock(p)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	g.Close()
}

// TestSyncRelabelsWhatItWrote: Relabel gets the paths an applied overlay
// wrote (under Root), and nothing when the overlay did not change.
func TestSyncRelabelsWhatItWrote(t *testing.T) {
	fs, srv := newFakeServer(t)
	fs.setOverlay(overlay(t, map[string]string{"etc/motd": "hello\n", "etc/passwd": "root:x:0:0::/root:/bin/sh\n"}), `"v1"`)
	var got [][]string
	a, root := newAgent(t, srv, func(o *Options) {
		o.Relabel = func(ctx context.Context, paths []string) error {
			got = append(got, paths)
			return nil
		}
	})
	if _, err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !slices.Contains(got[0], filepath.Join(root, "etc/passwd")) || !slices.Contains(got[0], filepath.Join(root, "etc/motd")) {
		t.Fatalf("relabelled %v", got)
	}
	if _, err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("relabelled again without a change: %v", got)
	}
}
