package provision

import (
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestTLSRequired: with an HTTPS listener (Options.TLSPort) the runtime
// overlay and heartbeats are refused on plain HTTP with the reason and
// served over TLS; boot stages and two-stage progress stay on plain HTTP.
func TestTLSRequired(t *testing.T) {
	e := &env{t: t, cfg: newFakeConfig(t, false, ""), builder: newFakeBuilder(), status: &fakeStatus{},
		reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	e.cfg.snap.Load().Server.TLS.Enabled = true // (before anything reads it)
	h, err := New(Options{Config: e.cfg, Builder: e.builder, Status: e.status, Registry: e.reg,
		Log: newTestLogger(e.logs), TLSPort: 9874})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	tlsSrv := httptest.NewTLSServer(h)
	t.Cleanup(tlsSrv.Close)

	resp, body := e.get("/overlay/runtime/" + macN002)
	wantCode(t, resp, body, http.StatusForbidden)
	if !strings.Contains(string(body), "only over HTTPS (port 9874)") {
		t.Errorf("refusal without its reason: %q", body)
	}
	resp, body = e.do(http.MethodPost, "/heartbeat/"+macN002, strings.NewReader(`{"node":"n002"}`))
	wantCode(t, resp, body, http.StatusForbidden)
	if v := counterValue(t, e.reg, "wwserver_http_refusals_total", "reason", ReasonTLSRequired); v != 2 {
		t.Errorf("TLS_REQUIRED refusals counted %v, want 2", v)
	}
	if evs, hbs := e.status.counts(); evs != 0 || hbs != 0 {
		t.Errorf("refused requests recorded %d events and %d heartbeats", evs, hbs)
	}
	resp, body = e.get("/overlay/system/" + macN002)
	wantCode(t, resp, body, http.StatusOK)

	for _, req := range []struct{ method, path, body string }{
		{http.MethodGet, "/overlay/runtime/" + macN002, ""},
		{http.MethodPost, "/heartbeat/" + macN002, `{"node":"n002"}`},
	} {
		r, err := http.NewRequest(req.method, tlsSrv.URL+req.path, strings.NewReader(req.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tlsSrv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Errorf("%s %s over TLS: %d %s", req.method, req.path, resp.StatusCode, b)
		}
	}

	// GRUB over TFTP: its config leaves the runtime overlay out, TFTP refuses it.
	cfg, _, _, err := readTFTP(t, e, "grub/"+macN002)
	if err != nil || strings.Contains(cfg, "/overlay/runtime/") || !strings.Contains(cfg, "/overlay/system/") {
		t.Errorf("GRUB config with TLS on (err %v):\n%s", err, cfg)
	}
	if _, _, _, err := readTFTP(t, e, "overlay/runtime/"+macN002); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("runtime overlay over TFTP with TLS on: %v", err)
	}
	if v := counterValue(t, e.reg, "wwserver_http_refusals_total", "reason", ReasonTLSRequired); v != 3 {
		t.Errorf("TLS_REQUIRED refusals counted %v, want 3 (with TFTP's)", v)
	}

	// [tls] turned off without a restart: plain HTTP is served again (the
	// iPXE script fetches the runtime overlay again, bootplan).
	snap := *e.cfg.snap.Load()
	srv := *snap.Server
	srv.TLS.Enabled = false
	snap.Server = &srv
	e.cfg.snap.Store(&snap)
	resp, body = e.get("/overlay/runtime/" + macN002)
	wantCode(t, resp, body, http.StatusOK)
}
