package provision

import (
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/status"
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
		ev := e.status.last(t)
		if ev.Sent != ReasonInsecurePort || ev.Stage != status.StageRuntimeOverlay || ev.Node == "" {
			t.Errorf("%s: event %+v", path, ev)
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
	if ev := e.status.last(t); ev.Sent != ReasonInsecurePort || ev.Stage != status.StageHeartbeat {
		t.Errorf("heartbeat refusal event %+v", ev)
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
			if ev := e.status.last(t); ev.Sent != ReasonBadAsset || ev.Node != "n001" {
				t.Errorf("%q: event %+v", c.query, ev)
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
	if os.Geteuid() != 0 {
		t.Skip("needs root to bind a privileged source port")
	}
	// The agent's own privileged-port dialer, as wwclient uses it.
	dial := agent.PrivilegedDialer(net.Dialer{}, 600, 1023)
	return &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

func TestRuntimePrivilegedPort(t *testing.T) {
	e := newEnv(t, true)
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
	if got := remoteIP("[::ffff:10.0.0.1]:5"); got != "10.0.0.1" {
		t.Errorf("remoteIP = %q", got)
	}
}
