package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// countingServer answers every request with code and counts them.
func countingServer(t *testing.T, code int) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.Error(w, "answer "+strconv.Itoa(code), code)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func heartbeatsAt(fs *fakeServer) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.heartbeats)
}

// A closed server (connection refused) is skipped: the heartbeat and the
// overlay come from the next one, which is used from then on.
func TestFailoverConnectionRefused(t *testing.T) {
	fsA, srvA := newFakeServer(t)
	fsB, srvB := newFakeServer(t)
	a, root := newAgent(t, srvA, func(o *Options) {
		o.Servers = []*url.URL{mustURL(t, srvA.URL), mustURL(t, srvB.URL)}
	})
	if _, err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if heartbeatsAt(fsA) != 1 || heartbeatsAt(fsB) != 0 || a.Server().String() != srvA.URL {
		t.Fatalf("first sync: heartbeats A=%d B=%d, server %s", heartbeatsAt(fsA), heartbeatsAt(fsB), a.Server())
	}
	srvA.Close()
	fsB.setOverlay(overlay(t, map[string]string{"etc/motd": "from B\n"}), `"b1"`)
	res, err := a.Sync(context.Background())
	if err != nil {
		t.Fatalf("sync with A closed: %v", err)
	}
	if !res.Changed || a.ETag() != `"b1"` || heartbeatsAt(fsB) != 1 || a.Server().String() != srvB.URL {
		t.Fatalf("after A closed: %+v, heartbeats at B %d, server %s", res, heartbeatsAt(fsB), a.Server())
	}
	if got, _ := os.ReadFile(filepath.Join(root, "etc/motd")); string(got) != "from B\n" {
		t.Fatalf("overlay from B not applied: %q", got)
	}
}

// A server answering 5xx is left for the next one, and not asked again
// while the next one works; a 4xx is an answer about the node and is
// returned as it is.
func TestFailover5xxSticks4xxDoesNot(t *testing.T) {
	bad, badHits := countingServer(t, http.StatusServiceUnavailable)
	fsB, srvB := newFakeServer(t)
	a, _ := newAgent(t, srvB, func(o *Options) {
		o.Servers = []*url.URL{mustURL(t, bad.URL), mustURL(t, srvB.URL)}
	})
	for i := 1; i <= 3; i++ {
		if _, err := a.Sync(context.Background()); err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
	}
	if badHits.Load() != 1 || heartbeatsAt(fsB) != 3 {
		t.Fatalf("5xx server asked %d times (want 1), heartbeats at the next %d (want 3)", badHits.Load(), heartbeatsAt(fsB))
	}

	refusing, refusedHits := countingServer(t, http.StatusForbidden)
	fsC, srvC := newFakeServer(t)
	a, _ = newAgent(t, srvC, func(o *Options) {
		o.Servers = []*url.URL{mustURL(t, refusing.URL), mustURL(t, srvC.URL)}
	})
	_, err := a.Sync(context.Background())
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusForbidden {
		t.Fatalf("4xx: err %v, want the 403", err)
	}
	if refusedHits.Load() != 1 || heartbeatsAt(fsC) != 0 {
		t.Fatalf("4xx failed over: refusing server asked %d times, next got %d heartbeats", refusedHits.Load(), heartbeatsAt(fsC))
	}
}

// A server that accepts the connection and never answers costs one
// RequestTimeout, then the next server is used.
func TestFailoverTimeout(t *testing.T) {
	hang, err := net.Listen("tcp", "127.0.0.1:0") // never accepts: the kernel queues the connection
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hang.Close() })
	fsB, srvB := newFakeServer(t)
	a, _ := newAgent(t, srvB, func(o *Options) {
		o.Servers = []*url.URL{mustURL(t, "http://"+hang.Addr().String()), mustURL(t, srvB.URL)}
		o.RequestTimeout = 200 * time.Millisecond
	})
	start := time.Now()
	if _, err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("failover took %s", took)
	}
	if heartbeatsAt(fsB) != 1 || a.Server().String() != srvB.URL {
		t.Fatalf("heartbeats at B %d, server %s", heartbeatsAt(fsB), a.Server())
	}
}

// An overlay download cut short (the server died mid-transfer) is fetched
// again from the next server.
func TestFailoverBrokenDownload(t *testing.T) {
	fsB, srvB := newFakeServer(t)
	full := overlay(t, map[string]string{"etc/motd": "whole\n"})
	fsB.setOverlay(full, `"w"`)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /heartbeat/{mac}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /overlay/runtime/{mac}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"w"`)
		w.Header().Set("Content-Length", strconv.Itoa(len(full)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(full[:len(full)/2])
		panic(http.ErrAbortHandler) // drop the connection, as a killed server does
	})
	cut := httptest.NewServer(mux)
	t.Cleanup(cut.Close)
	a, root := newAgent(t, srvB, func(o *Options) {
		o.Servers = []*url.URL{mustURL(t, cut.URL), mustURL(t, srvB.URL)}
	})
	res, err := a.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || a.Server().String() != srvB.URL {
		t.Fatalf("%+v, server %s", res, a.Server())
	}
	if got, _ := os.ReadFile(filepath.Join(root, "etc/motd")); string(got) != "whole\n" {
		t.Fatalf("applied %q", got)
	}
}

// Every server down: the error of the last one, and the server in use
// stays the first.
func TestFailoverAllDown(t *testing.T) {
	_, srvA := newFakeServer(t)
	_, srvB := newFakeServer(t)
	srvA.Close()
	srvB.Close()
	a, _ := newAgent(t, srvA, func(o *Options) {
		o.Servers = []*url.URL{mustURL(t, srvA.URL), mustURL(t, srvB.URL)}
	})
	if _, err := a.Sync(context.Background()); err == nil {
		t.Fatal("sync with every server down succeeded")
	}
	if a.Server().String() != srvA.URL {
		t.Fatalf("server in use %s, want the first", a.Server())
	}
}
