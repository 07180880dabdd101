package provision

import (
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/wwclient/agent"
)

func TestRuntimeInsecurePortRefused(t *testing.T) {
	e := newEnv(t, true)
	for _, path := range []string{
		"/overlay/runtime/" + macN002,
		"/overlay/runtime/" + macN001 + "?assetkey=s3cret",
		"/provision/" + macN002 + "?stage=runtime",
	} {
		resp, body := e.get(path, "User-Agent", "iPXE/1.21.1") // claiming to be iPXE changes nothing
		wantCode(t, resp, body, http.StatusForbidden)
		if !strings.Contains(string(body), "privileged source ports") {
			t.Errorf("%s: refusal without its reason: %q", path, body)
		}
		if strings.Contains(string(body), "RUNTIME") {
			t.Errorf("refusal leaks content: %q", body)
		}
	}
	if n := e.builder.callCount("runtime"); n != 0 {
		t.Errorf("runtime overlay built %d times for refused requests", n)
	}
	// Heartbeats too.
	resp, body := e.do(http.MethodPost, "/heartbeat/"+macN002, strings.NewReader(`{"node":"n002"}`))
	wantCode(t, resp, body, http.StatusForbidden)
	// Refusals are counted, never recorded as the node's status (TestRefusalsLeaveStatus).
	if evs, hbs := e.status.counts(); evs != 0 || hbs != 0 {
		t.Errorf("refused requests recorded %d events and %d heartbeats", evs, hbs)
	}
	if v := counterValue(t, e.reg, "wwserver_http_refusals_total", "reason", ReasonInsecurePort); v != 4 {
		t.Errorf("INSECURE_PORT refusals counted %v, want 4", v)
	}
	// Other stages are not guarded.
	resp, body = e.get("/overlay/system/" + macN002)
	wantCode(t, resp, body, http.StatusOK)
}

func TestAssetKey(t *testing.T) {
	e := newEnv(t, false) // the asset key applies in insecure mode too
	cases := []struct {
		query string
		code  int
	}{
		{"", http.StatusUnauthorized},
		{"?assetkey=", http.StatusUnauthorized},
		{"?assetkey=wrong", http.StatusForbidden},
		{"?assetkey=s3cre", http.StatusForbidden},
		{"?assetkey=s3crett", http.StatusForbidden},
		{"?assetkey=%zz", http.StatusBadRequest},
		{"?assetkey=s3cret", http.StatusOK},
	}
	for _, c := range cases {
		resp, body := e.get("/overlay/runtime/" + macN001 + c.query)
		wantCode(t, resp, body, c.code)
		switch c.code {
		case http.StatusUnauthorized, http.StatusForbidden:
			if evs, _ := e.status.counts(); evs != 0 {
				t.Errorf("%q: a refused request was recorded in status: %+v", c.query, e.status.last(t))
			}
			if strings.Contains(string(body), "s3cret") || strings.Contains(string(body), "RUNTIME") {
				t.Errorf("%q: body leaks: %q", c.query, body)
			}
		case http.StatusOK:
			if !strings.HasPrefix(string(body), "runtime/n001:") {
				t.Errorf("body %q", body)
			}
		}
		if c.code == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate")
		}
	}
	// A node without a key needs none; another node's key does not matter.
	resp, body := e.get("/overlay/runtime/" + macN002 + "?assetkey=s3cret")
	wantCode(t, resp, body, http.StatusOK)
	if !strings.HasPrefix(string(body), "runtime/n002:") {
		t.Errorf("got %q", body)
	}
	// Heartbeat with and without the key.
	resp, body = e.do(http.MethodPost, "/heartbeat/"+macN001, strings.NewReader(`{}`))
	wantCode(t, resp, body, http.StatusUnauthorized)
	resp, body = e.do(http.MethodPost, "/heartbeat/"+macN001+"?assetkey=nope", strings.NewReader(`{}`))
	wantCode(t, resp, body, http.StatusForbidden)
	resp, body = e.do(http.MethodPost, "/heartbeat/"+macN001+"?assetkey=s3cret", strings.NewReader(`{}`))
	wantCode(t, resp, body, http.StatusNoContent)
}

func TestKeyEqual(t *testing.T) {
	if !keyEqual("a", "a") || keyEqual("a", "b") || keyEqual("a", "aa") || keyEqual("", "a") {
		t.Error("keyEqual")
	}
}

// privilegedClient returns a client whose connections come from a source
// port below 1024 (needs root or CAP_NET_BIND_SERVICE).
func privilegedClient(t *testing.T) *http.Client {
	t.Helper()
	return privilegedClientFrom(t, "")
}

// privilegedClientFrom is privilegedClient binding the local address src
// ("" lets the kernel choose).
func privilegedClientFrom(t *testing.T, src string) *http.Client {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to bind a privileged source port")
	}
	var base net.Dialer
	if src != "" {
		base.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	// The agent's own privileged-port dialer, as wwclient uses it.
	dial := agent.PrivilegedDialer(base, 600, 1023)
	return &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

func TestRuntimePrivilegedPort(t *testing.T) {
	e := newEnv(t, true)
	// The test nodes' addresses are not this host's (TestSourceCheck).
	e.cfg.snap.Store(newFakeConfig(t, true, "source_check = false").snap.Load())
	client := privilegedClient(t)
	get := func(path string) (*http.Response, string) {
		resp, err := client.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("/overlay/runtime/" + macN002)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "runtime/n002:") {
		t.Fatalf("privileged port: %d %q", resp.StatusCode, body)
	}
	if ev := e.status.last(t); ev.Sent != "__RUNTIME__.img.gz" || ev.Node != "n002" {
		t.Errorf("event %+v", ev)
	}
	// The asset key is still required from a privileged port.
	resp, _ = get("/overlay/runtime/" + macN001)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("n001 without key: %d", resp.StatusCode)
	}
	resp, _ = get("/overlay/runtime/" + macN001 + "?assetkey=bad")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("n001 bad key: %d", resp.StatusCode)
	}
	resp, body = get("/provision/" + macN001 + "?stage=runtime&assetkey=s3cret")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "runtime/n001:") {
		t.Errorf("n001 with key: %d %q", resp.StatusCode, body)
	}
	// Heartbeat from a privileged port.
	hr, err := client.Post(e.srv.URL+"/heartbeat/"+macN002, "application/json", strings.NewReader(`{"node":"n002","uptime_seconds":5}`))
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.StatusCode != http.StatusNoContent {
		t.Errorf("heartbeat: %d", hr.StatusCode)
	}
}

func TestSourcePort(t *testing.T) {
	for in, want := range map[string]uint16{"1.2.3.4:80": 80, "[::1]:1023": 1023, "1.2.3.4:40000": 40000, "junk": 0, "@": 0} {
		if got := sourcePort(in); got != want {
			t.Errorf("sourcePort(%q) = %d", in, got)
		}
	}
	for remote, want := range map[string]string{"10.0.0.2:700": "10.0.0.2", "[fe80::1]:5": "fe80::1", "noport": "noport"} {
		if got := remoteIP(remote); got != want {
			t.Errorf("remoteIP(%q) = %q, want %q", remote, got, want)
		}
	}
	if got := remoteIP("[::ffff:10.0.0.1]:5"); got != "10.0.0.1" {
		t.Errorf("remoteIP = %q", got)
	}
}

// fakeLeases is a DHCP lease table: address → MAC.
type fakeLeases map[string]string

func (f fakeLeases) LeaseByIP(ip string) (string, string, bool) {
	mac, ok := f[ip]
	return mac, "", ok
}

func (f fakeLeases) HasLease(mac string) bool {
	for _, m := range f {
		if m == mac {
			return true
		}
	}
	return false
}

// TestSourceCheck: in secure mode a node's runtime overlay and heartbeats
// come only from an address it holds, configured or leased; a node with
// neither is not checked.
func TestSourceCheck(t *testing.T) {
	e := newEnv(t, true)
	// n002 is configured at 127.0.0.12 and leases 127.0.0.22 too; n003 has
	// no configured address and leases 127.0.0.23; 127.0.0.30 is a pool
	// lease of an unknown MAC.
	nodes := strings.Replace(testNodes, `ipaddr = "10.0.2.12"`, `ipaddr = "127.0.0.12"`, 1)
	snap := e.cfg.snap.Load()
	n, err := config.ParseNodes("nodes.toml", []byte(nodes))
	if err != nil {
		t.Fatal(err)
	}
	srv := *snap.Server
	srv.Address = "127.0.0.99" // the server host's own address passes (admin tools)
	e.cfg.snap.Store(&config.Snapshot{Server: &srv, Nodes: n, LoadedAt: snap.LoadedAt})
	e.h.leases = fakeLeases{"127.0.0.22": macN002, "127.0.0.23": macN003, "127.0.0.30": "02:00:00:00:00:30"}

	get := func(src, mac string) int {
		t.Helper()
		resp, err := privilegedClientFrom(t, src).Get(e.srv.URL + "/overlay/runtime/" + mac)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		src, mac string
		code     int
	}{
		{"127.0.0.12", macN002, http.StatusOK},        // configured address
		{"127.0.0.22", macN002, http.StatusOK},        // its DHCP lease
		{"127.0.0.23", macN002, http.StatusForbidden}, // another node's lease
		{"127.0.0.30", macN002, http.StatusForbidden}, // a pool client
		{"127.0.0.23", macN003, http.StatusOK},        // leased only
		{"127.0.0.12", macN003, http.StatusForbidden},
		{"127.0.0.99", macN002, http.StatusOK}, // the server's own address
	} {
		before, _ := e.status.counts()
		if got := get(c.src, c.mac); got != c.code {
			t.Errorf("%s from %s: %d, want %d", c.mac, c.src, got, c.code)
		}
		if after, _ := e.status.counts(); c.code == http.StatusForbidden && after != before {
			t.Errorf("%s from %s: the refusal was recorded: %+v", c.mac, c.src, e.status.last(t))
		}
	}
	if v := counterValue(t, e.reg, "wwserver_http_refusals_total", "reason", ReasonWrongSource); v != 3 {
		t.Errorf("WRONG_SOURCE refusals counted %v, want 3", v)
	}
	// Without a lease n003 cannot be checked; without DHCP, neither.
	e.h.leases = fakeLeases{}
	if got := get("127.0.0.40", macN003); got != http.StatusOK {
		t.Errorf("n003 with no address known: %d", got)
	}
	e.h.leases = nil
	if got := get("127.0.0.40", macN003); got != http.StatusOK {
		t.Errorf("n003 without DHCP: %d", got)
	}
	if got := get("127.0.0.40", macN002); got != http.StatusForbidden {
		t.Errorf("n002 from elsewhere without DHCP: %d", got)
	}
	// source_check = false (relayed/NATed nodes) lifts it.
	e.cfg.snap.Store(&config.Snapshot{Server: newFakeConfig(t, true, "source_check = false").snap.Load().Server, Nodes: n})
	if got := get("127.0.0.40", macN002); got != http.StatusOK {
		t.Errorf("n002 from elsewhere with source_check = false: %d", got)
	}
	e.cfg.snap.Store(&config.Snapshot{Server: snap.Server, Nodes: n})
	// Heartbeats too.
	resp, err := privilegedClientFrom(t, "127.0.0.40").Post(e.srv.URL+"/heartbeat/"+macN002, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("heartbeat from elsewhere: %d", resp.StatusCode)
	}
}
