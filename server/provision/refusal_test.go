package provision

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/status"
)

// realStatusEnv is a handler over a real status store, with n002
// configured at 127.0.0.12 (a loopback address a test can send from).
type realStatusEnv struct {
	st  *status.Store
	cfg *fakeConfig
	reg *prometheus.Registry
	url string
}

func newRealStatusEnv(t *testing.T, secure bool) *realStatusEnv {
	t.Helper()
	cfg := newFakeConfig(t, secure, "")
	n, err := config.ParseNodes("nodes.toml", []byte(strings.Replace(testNodes, `ipaddr = "10.0.2.12"`, `ipaddr = "127.0.0.12"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	snap := *cfg.snap.Load()
	snap.Nodes = n
	cfg.snap.Store(&snap)
	e := &realStatusEnv{st: status.New(newTestLogger(io.Discard)), cfg: cfg, reg: prometheus.NewRegistry()}
	h, err := New(Options{Config: cfg, Builder: newFakeBuilder(), Status: e.st, Registry: e.reg, Log: newTestLogger(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

func (e *realStatusEnv) row(t *testing.T, node string) status.NodeStatus {
	t.Helper()
	for _, r := range e.st.Report(e.cfg.snap.Load().Nodes).Nodes {
		if r.Name == node {
			return r
		}
	}
	t.Fatalf("no status row for %s", node)
	return status.NodeStatus{}
}

func send(t *testing.T, c *http.Client, method, url, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, b := do(t, c, req)
	return resp.StatusCode, string(b)
}

// do sends req and reads the whole answer.
func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestRefusalsLeaveStatus (issue 20, Medium 4): a heartbeat or runtime
// overlay request refused for who sent it (unprivileged source port, an
// address the node does not hold, a bad asset key) is counted by reason
// and changes nothing in the node's status: not its last seen, stage,
// address or heartbeat. Before, `curl -X POST -d garbage …/heartbeat/MAC`
// answered 403 and still made the node look alive.
func TestRefusalsLeaveStatus(t *testing.T) {
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	seed := func(e *realStatusEnv, node, mac, ip string) status.NodeStatus {
		e.st.Record(status.Event{Node: node, MAC: mac, IP: ip, Stage: status.StageSystemOverlay, Sent: "__SYSTEM__.img.gz", Time: past})
		return e.row(t, node)
	}
	unchanged := func(t *testing.T, e *realStatusEnv, what string, before status.NodeStatus) {
		t.Helper()
		after := e.row(t, before.Name)
		if after.LastSeen != before.LastSeen || after.Stage != before.Stage || after.Sent != before.Sent ||
			after.IPAddr != before.IPAddr || after.Heartbeat != nil {
			t.Errorf("%s changed %s's status:\nbefore %+v\nafter  %+v", what, before.Name, before, after)
		}
	}

	t.Run("secure", func(t *testing.T) {
		e := newRealStatusEnv(t, true)
		before := seed(e, "n002", macN002, "127.0.0.12")
		plain := &http.Client{}
		for _, r := range []struct{ method, path, body string }{
			{http.MethodPost, "/heartbeat/" + macN002, "garbage"},
			{http.MethodPost, "/heartbeat/" + macN002, `{"node":"n002","uptime_seconds":1}`},
			{http.MethodGet, "/overlay/runtime/" + macN002, ""},
			{http.MethodGet, "/provision/" + macN002 + "?stage=runtime", ""},
		} {
			code, body := send(t, plain, r.method, e.url+r.path, r.body)
			if code != http.StatusForbidden || !strings.Contains(body, "privileged source ports") {
				t.Errorf("%s %s from an unprivileged port: %d %q, want 403 with the reason", r.method, r.path, code, body)
			}
		}
		unchanged(t, e, "refused requests from an unprivileged port", before)
		if v := counterValue(t, e.reg, "wwserver_http_refusals_total", "reason", ReasonInsecurePort); v != 4 {
			t.Errorf("INSECURE_PORT refusals counted %v, want 4", v)
		}

		if os.Geteuid() != 0 {
			t.Skip("the rest needs root to bind privileged source ports")
		}
		other := privilegedClientFrom(t, "127.0.0.40")
		for _, r := range []struct{ method, path, body string }{
			{http.MethodPost, "/heartbeat/" + macN002, `{"node":"n002","uptime_seconds":1}`},
			{http.MethodGet, "/overlay/runtime/" + macN002, ""},
		} {
			code, body := send(t, other, r.method, e.url+r.path, r.body)
			if code != http.StatusForbidden || !strings.Contains(body, "node's own address") {
				t.Errorf("%s %s from another address: %d %q, want 403 with the reason", r.method, r.path, code, body)
			}
		}
		unchanged(t, e, "refused requests from another address", before)
		if v := counterValue(t, e.reg, "wwserver_http_refusals_total", "reason", ReasonWrongSource); v != 2 {
			t.Errorf("WRONG_SOURCE refusals counted %v, want 2", v)
		}

		// The node itself is still recorded: its heartbeat moves last seen.
		own := privilegedClientFrom(t, "127.0.0.12")
		if code, body := send(t, own, http.MethodPost, e.url+"/heartbeat/"+macN002, `{"node":"n002","uptime_seconds":7}`); code != http.StatusNoContent {
			t.Fatalf("heartbeat from the node: %d %q", code, body)
		}
		if r := e.row(t, "n002"); r.LastSeen <= before.LastSeen || r.Heartbeat == nil || r.Heartbeat.UptimeSeconds != 7 {
			t.Errorf("the node's own heartbeat was not recorded: %+v", r)
		}
	})

	t.Run("asset key", func(t *testing.T) {
		e := newRealStatusEnv(t, false)
		before := seed(e, "n001", macN001, "10.0.2.11")
		plain := &http.Client{}
		for _, r := range []struct {
			method, path, body string
			code               int
		}{
			{http.MethodPost, "/heartbeat/" + macN001, `{"node":"n001"}`, http.StatusUnauthorized},
			{http.MethodPost, "/heartbeat/" + macN001 + "?assetkey=wrong", `{"node":"n001"}`, http.StatusForbidden},
			{http.MethodGet, "/overlay/runtime/" + macN001 + "?assetkey=wrong", "", http.StatusForbidden},
			{http.MethodGet, "/overlay/runtime/" + macN001, "", http.StatusUnauthorized},
		} {
			code, body := send(t, plain, r.method, e.url+r.path, r.body)
			if code != r.code || !strings.Contains(body, "asset") {
				t.Errorf("%s %s: %d %q, want %d with the reason", r.method, r.path, code, body, r.code)
			}
		}
		unchanged(t, e, "requests refused for their asset key", before)
		if v := counterValue(t, e.reg, "wwserver_http_refusals_total", "reason", ReasonBadAsset); v != 4 {
			t.Errorf("BAD_ASSET refusals counted %v, want 4", v)
		}
		// With the key, the same heartbeat is the node's and is recorded.
		if code, body := send(t, plain, http.MethodPost, e.url+"/heartbeat/"+macN001+"?assetkey=s3cret", `{"node":"n001"}`); code != http.StatusNoContent {
			t.Fatalf("heartbeat with the key: %d %q", code, body)
		}
		if r := e.row(t, "n001"); r.LastSeen <= before.LastSeen || r.Heartbeat == nil {
			t.Errorf("the accepted heartbeat was not recorded: %+v", r)
		}
	})
}
