package provision

import (
	"net/http"
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

// TestNonUnicastMACRefused (issue 20, Low 11): a MAC no network card has
// (all zeros, broadcast, multicast) in a per-node URL is a 400 with the
// reason, counted as BAD_MAC; it is not offered to discovery nor recorded
// as an unknown MAC.
func TestNonUnicastMACRefused(t *testing.T) {
	d := &fakeDiscoverer{node: "n002"}
	e := newDiscoverEnv(t, d, 0)
	paths := []string{"/ipxe/", "/kernel/", "/image/", "/overlay/system/", "/overlay/runtime/"}
	macs := []string{"ff:ff:ff:ff:ff:ff", "FF-FF-FF-FF-FF-FF", "00:00:00:00:00:00", "01:00:5e:00:00:01", "33:33:00:00:00:01"}
	for _, mac := range macs {
		for _, p := range paths {
			resp, body := e.get(p + mac)
			wantCode(t, resp, body, http.StatusBadRequest)
			if !strings.Contains(string(body), "not a network card's") {
				t.Errorf("%s%s: reason missing: %q", p, mac, body)
			}
		}
		resp, body := e.do(http.MethodPost, "/heartbeat/"+mac, strings.NewReader(`{}`))
		wantCode(t, resp, body, http.StatusBadRequest)
	}
	if got := d.asked(); len(got) != 0 {
		t.Errorf("discovery was asked for %v", got)
	}
	if evs, hbs := e.status.counts(); evs != 0 || hbs != 0 {
		t.Errorf("%d events, %d heartbeats recorded for refused MACs", evs, hbs)
	}
	if v := counterValue(t, e.reg, "wwserver_http_refusals_total", "reason", ReasonBadMAC); v != float64(len(macs)*(len(paths)+1)) {
		t.Errorf("BAD_MAC refusals counted %v, want %d", v, len(macs)*(len(paths)+1))
	}
	// A unicast unknown MAC still gets discovered.
	resp, body := e.get("/ipxe/02:00:00:00:00:42")
	wantCode(t, resp, body, http.StatusOK)
	if got := d.asked(); len(got) != 1 || got[0] != "02:00:00:00:00:42" {
		t.Errorf("discovery asked for %v", got)
	}
}
