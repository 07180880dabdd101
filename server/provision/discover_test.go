package provision

import (
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwcluster/ww/server/config"
)

// fakeDiscoverer gives every MAC node (or fails with err); the real one is
// server/nodeedit.Discoverer, tested there and end to end.
type fakeDiscoverer struct {
	cfg  *fakeConfig
	snap *config.Snapshot // returned instead of the config's when set
	node string
	err  error
	mu   sync.Mutex
	macs []string
}

func (f *fakeDiscoverer) asked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.macs...)
}

func (f *fakeDiscoverer) Discover(mac string) (*config.Snapshot, *config.Node, error) {
	f.mu.Lock()
	f.macs = append(f.macs, mac)
	f.mu.Unlock()
	if f.err != nil {
		return nil, nil, f.err
	}
	snap := f.cfg.Fresh()
	if f.snap != nil {
		snap = f.snap
	}
	return snap, snap.Nodes.ByName[f.node], nil
}

func newDiscoverEnv(t *testing.T, d *fakeDiscoverer, freshEvery time.Duration) *env {
	t.Helper()
	e := &env{t: t, cfg: newFakeConfig(t, true, ""), builder: newFakeBuilder(), status: &fakeStatus{},
		reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	d.cfg = e.cfg
	h, err := New(Options{Config: e.cfg, Builder: e.builder, Status: e.status, Registry: e.reg,
		Log: newTestLogger(e.logs), Discoverer: d, FreshEvery: freshEvery})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

func TestIPXEAsksDiscovererForUnknownMAC(t *testing.T) {
	d := &fakeDiscoverer{node: "n002"}
	e := newDiscoverEnv(t, d, 0)
	resp, body := e.get("/ipxe/" + macNone)
	wantCode(t, resp, body, 200)
	if !strings.Contains(string(body), "wwid="+macNone) || strings.Contains(string(body), "not a known node") {
		t.Fatalf("discovered MAC did not get the node's script:\n%s", body)
	}
	if ev := e.status.last(t); ev.Node != "n002" || ev.MAC != macNone {
		t.Errorf("status event %+v, want node n002 for %s", ev, macNone)
	}
	// A known MAC never asks.
	resp, body = e.get("/ipxe/" + macN001)
	wantCode(t, resp, body, 200)
	if asked := d.asked(); len(asked) != 1 {
		t.Errorf("discoverer asked for %v, want only %s", asked, macNone)
	}
}

func TestIPXEDiscoveryFailureServesUnknownScript(t *testing.T) {
	d := &fakeDiscoverer{err: errBoom}
	e := newDiscoverEnv(t, d, 0)
	resp, body := e.get("/ipxe/" + macNone)
	wantCode(t, resp, body, 200)
	if !strings.Contains(string(body), "not a known node") {
		t.Errorf("want the unknown-node script:\n%s", body)
	}
	if !strings.Contains(e.logs.String(), "discovery failed") {
		t.Errorf("discovery error not logged:\n%s", e.logs.String())
	}
}

// The discovered node's next request sees its MAC at once, even when the
// handler asks the config only every so often (FreshEvery).
func TestDiscoveredNodeKnownOnNextRequest(t *testing.T) {
	d := &fakeDiscoverer{node: "n002"}
	e := newDiscoverEnv(t, d, time.Hour)
	cur := e.cfg.Fresh()
	nodes, err := config.ParseNodes("nodes.toml", []byte(strings.Replace(testNodes, macN002, macNone, 1)))
	if err != nil {
		t.Fatal(err)
	}
	d.snap = &config.Snapshot{Server: cur.Server, Nodes: nodes, Gen: cur.Gen + 1}
	resp, body := e.get("/ipxe/" + macN001) // fills the handler's snapshot cache
	wantCode(t, resp, body, 200)
	resp, body = e.get("/ipxe/" + macNone)
	wantCode(t, resp, body, 200)
	resp, body = e.get("/kernel/" + macNone)
	wantCode(t, resp, body, 200)
}
