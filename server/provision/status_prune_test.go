package provision

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestStatusPruneOnlyFromLoopback: dropping status history is for the CLI
// on the server host; any other source gets 403 with the reason.
func TestStatusPruneOnlyFromLoopback(t *testing.T) {
	e := newEnv(t, true)
	req := httptest.NewRequest(http.MethodPost, "/status/prune", strings.NewReader(`{"removed":true}`))
	req.RemoteAddr = "192.0.2.7:40000"
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "loopback") {
		t.Errorf("remote prune: %d %q", rec.Code, rec.Body.String())
	}
	// From loopback, a status store without prune support says so.
	resp, body := e.do(http.MethodPost, "/status/prune", strings.NewReader(`{"removed":true}`))
	if resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("prune on a store without it: %d %s", resp.StatusCode, body)
	}
}
