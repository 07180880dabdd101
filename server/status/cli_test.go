package status

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/config"
)

// testServer serves GET /status, as provision does (serveStatus), for a
// store with 3 configured nodes.
func testServer(t *testing.T) (*httptest.Server, *Store) {
	t.Helper()
	st, _, _ := newTestStore(t, "")
	srv, err := config.ParseServer("wwserver.toml", []byte("address = \"10.0.2.1\"\nupdate_interval = \"5s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	snap := &config.Snapshot{Server: srv, Nodes: testNodes(t, 3)}
	st.Record(Event{Node: "c00001", MAC: mac(1), Stage: StageRuntimeOverlay, Sent: "__RUNTIME__.img.gz", Time: t0.Add(-16 * time.Second)})
	st.Record(Event{MAC: "52:54:00:ff:ff:01", Stage: StageDHCP, Time: t0})
	ts := httptest.NewServer(jsonHandler(st, snap))
	t.Cleanup(ts.Close)
	return ts, st
}

// jsonHandler serves the store's report of snap, as GET /status does
// (provision.Handler.serveStatus, whose route tests check method and
// headers).
func jsonHandler(st *Store, snap *config.Snapshot) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		st.SetUpdateInterval(snap.Server.UpdateInterval.Duration)
		data, err := st.JSON(snap.Nodes)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(data)
	})
}

// TestReportJSON: the report GET /status serves has the update interval,
// every configured node and the unknown MACs.
func TestReportJSON(t *testing.T) {
	ts, _ := testServer(t)
	resp, err := http.Get(ts.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if rep.UpdateIntervalSeconds != 5 || len(rep.Nodes) != 3 || len(rep.Unknown) != 1 {
		t.Errorf("report %+v", rep)
	}
}

func TestShowTable(t *testing.T) {
	ts, _ := testServer(t)
	var out, errw bytes.Buffer
	err := Show(context.Background(), &out, ShowOptions{Server: ts.URL + "/", Stderr: &errw})
	if err != nil {
		t.Fatal(err)
	}
	want := "NODENAME             STAGE                SENT                      LASTSEEN (s)\n" +
		strings.Repeat("=", 80) + "\n" +
		"c00001               RUNTIME_OVERLAY      __RUNTIME__.img.gz        16\n" +
		"c00002               --                   --                        --\n" +
		"c00003               --                   --                        --\n" +
		"\n" +
		"UNKNOWN MAC          STAGE                SENT                      LASTSEEN (s)\n" +
		strings.Repeat("=", 80) + "\n" +
		"52:54:00:ff:ff:01    DHCP                 --                        0\n"
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
	if errw.Len() != 0 {
		t.Errorf("stderr: %q", errw.String())
	}
}

func TestShowFilterAndJSON(t *testing.T) {
	ts, _ := testServer(t)
	var out, errw bytes.Buffer
	err := Show(context.Background(), &out, ShowOptions{Server: ts.URL, JSON: true, Names: []string{"c00002", "c00001", "x9"}, Stderr: &errw})
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(rep.Nodes) != 2 || rep.Nodes[0].Name != "c00001" || len(rep.Unknown) != 0 || rep.UpdateIntervalSeconds != 5 {
		t.Errorf("filtered report = %+v", rep)
	}
	if !strings.Contains(errw.String(), "no such node: x9") {
		t.Errorf("stderr = %q", errw.String())
	}
	err = Show(context.Background(), &out, ShowOptions{Server: ts.URL, Names: []string{"x1", "x2"}})
	if err == nil || !strings.Contains(err.Error(), "knows none of the given nodes (x1, x2)") {
		t.Errorf("no match error = %v", err)
	}
}

func TestShowUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	var out bytes.Buffer
	err = Show(context.Background(), &out, ShowOptions{Server: url, Timeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "cannot reach wwserver at "+url) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("err = %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("wrote %q", out.String())
	}
	// Also when watching: the first fetch failing is an error.
	err = Show(context.Background(), &out, ShowOptions{Server: url, Watch: true, Interval: time.Millisecond})
	if err == nil {
		t.Error("watch with an unreachable server returned nil")
	}
}

func TestShowServerError(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer ts.Close()
	err := Show(context.Background(), &bytes.Buffer{}, ShowOptions{Server: ts.URL})
	if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "boom") {
		t.Errorf("err = %v", err)
	}
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) }))
	defer bad.Close()
	if err := Show(context.Background(), &bytes.Buffer{}, ShowOptions{Server: bad.URL}); err == nil || !strings.Contains(err.Error(), "bad status report") {
		t.Errorf("err = %v", err)
	}
}

func TestShowTimeout(t *testing.T) {
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer ts.Close()
	defer close(release)
	err := Show(context.Background(), &bytes.Buffer{}, ShowOptions{Server: ts.URL, Timeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Errorf("err = %v", err)
	}
}

// frameWriter cancels the context after n writes (frames).
type frameWriter struct {
	mu     sync.Mutex
	frames []string
	n      int
	cancel context.CancelFunc
}

func (w *frameWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.frames = append(w.frames, string(p))
	if len(w.frames) == w.n {
		w.cancel()
	}
	return len(p), nil
}

func TestShowWatch(t *testing.T) {
	ts, st := testServer(t)
	for _, clear := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		w := &frameWriter{n: 3, cancel: cancel}
		err := Show(ctx, w, ShowOptions{Server: ts.URL, Watch: true, Interval: time.Millisecond, Clear: clear, Render: RenderOptions{Color: true}})
		if err != nil {
			t.Fatal(err)
		}
		if len(w.frames) != 3 {
			t.Fatalf("frames = %d, want 3", len(w.frames))
		}
		for _, f := range w.frames {
			if strings.HasPrefix(f, ANSIClearHome) != clear || strings.Count(f, ANSIClearHome) > 1 {
				t.Errorf("clear=%v frame %q", clear, f)
			}
			if !strings.Contains(f, "Every 1ms: "+ts.URL) || !strings.Contains(f, "c00001               RUNTIME_OVERLAY") {
				t.Errorf("frame = %q", f)
			}
			// c00001 was seen 16 s ago, over 2×5 s: red.
			if !strings.Contains(f, ansiRed+"c00001") {
				t.Errorf("stale node not red: %q", f)
			}
		}
	}
	_ = st
}

func TestShowWatchSurvivesOutage(t *testing.T) {
	var mu sync.Mutex
	fail := false
	ts, _ := testServer(t)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := fail
		fail = true // every request after the first fails
		mu.Unlock()
		if f {
			http.Error(w, "restarting", http.StatusServiceUnavailable)
			return
		}
		resp, err := http.Get(ts.URL + r.URL.Path)
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		w.Write(b.Bytes())
	}))
	defer proxy.Close()
	ctx, cancel := context.WithCancel(context.Background())
	w := &frameWriter{n: 2, cancel: cancel}
	if err := Show(ctx, w, ShowOptions{Server: proxy.URL, Watch: true, Interval: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(w.frames[0], "NODENAME") || !strings.Contains(w.frames[1], "error: ") || !strings.Contains(w.frames[1], "restarting") {
		t.Errorf("frames = %q", w.frames)
	}
}

func TestShowOptionErrors(t *testing.T) {
	if err := Show(context.Background(), &bytes.Buffer{}, ShowOptions{Server: "http://x", Render: RenderOptions{Sort: "size"}}); err == nil {
		t.Error("bad sort accepted")
	}
	if err := Show(context.Background(), &bytes.Buffer{}, ShowOptions{Server: "http://x", Watch: true}); err == nil {
		t.Error("zero watch interval accepted")
	}
}

func TestDefaultServerURL(t *testing.T) {
	for toml, want := range map[string]string{
		"address = \"10.0.2.1\"\n":                             "http://127.0.0.1:9873",
		"address = \"10.0.2.1\"\nlisten = \":8080\"\n":         "http://127.0.0.1:8080",
		"address = \"10.0.2.1\"\nlisten = \"0.0.0.0:81\"\n":    "http://127.0.0.1:81",
		"address = \"10.0.2.1\"\nlisten = \"10.0.2.1:9000\"\n": "http://10.0.2.1:9000",
		"address = \"10.0.2.1\"\nlisten = \"[::1]:9000\"\n":    "http://[::1]:9000",
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, config.ServerFile), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := DefaultServerURL(dir)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", toml, got, err, want)
		}
	}
	if _, err := DefaultServerURL(t.TempDir()); err == nil || !strings.Contains(err.Error(), "wwserver.toml") {
		t.Errorf("missing config error = %v", err)
	}
}

// BenchmarkHTTPStatus10k is GET /status end to end (loopback HTTP, body read
// fully) with 10,000 seen nodes while events keep arriving; it reports
// requests/s and the p99 latency.
func BenchmarkHTTPStatus10k(b *testing.B) {
	st, nodes := seenStore(b, 10000)
	srv, _ := config.ParseServer("wwserver.toml", []byte("address = \"10.0.2.1\"\n"))
	snap := &config.Snapshot{Server: srv, Nodes: nodes}
	ts := httptest.NewServer(jsonHandler(st, snap))
	defer ts.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			st.Record(Event{Node: nodes.List[i%len(nodes.List)].Name, Stage: StageHeartbeat})
		}
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var mu sync.Mutex
	var lat []time.Duration
	var size int64
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			t := time.Now()
			resp, err := client.Get(ts.URL + "/status")
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(t))
			mu.Lock()
			size = n
			mu.Unlock()
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(size)/1e6, "MB/resp")
	}
}

func TestShowWatchJSONStream(t *testing.T) {
	ts, _ := testServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	w := &frameWriter{n: 2, cancel: cancel}
	if err := Show(ctx, w, ShowOptions{Server: ts.URL, JSON: true, Watch: true, Interval: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(strings.Join(w.frames, "")))
	for i := 0; i < 2; i++ {
		var rep Report
		if err := dec.Decode(&rep); err != nil || len(rep.Nodes) != 3 {
			t.Fatalf("document %d: %v %+v", i, err, rep)
		}
	}
}
