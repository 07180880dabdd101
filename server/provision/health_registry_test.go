package provision

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/health"
)

// TestHealthzListsComponents: a component that reports a failure (builds
// failing on a full disk) makes /healthz degraded with its reason; when it
// recovers /healthz is ok again, and every component is listed.
func TestHealthzListsComponents(t *testing.T) {
	e := newEnv(t, true)
	reg := health.New()
	e.h.registry = reg
	reg.Report("status", nil)
	reg.Report("build", errors.New("write state/cache/x: no space left on device"))
	resp, body := e.get("/healthz")
	wantCode(t, resp, body, http.StatusServiceUnavailable)
	first, rest, _ := strings.Cut(string(body), "\n")
	if first != "degraded: build: write state/cache/x: no space left on device" {
		t.Errorf("first line %q", first)
	}
	if !strings.Contains(rest, "build: degraded since ") || !strings.Contains(rest, "status: ok") {
		t.Errorf("component lines %q", rest)
	}
	reg.Report("build", nil)
	resp, body = e.get("/healthz")
	wantCode(t, resp, body, http.StatusOK)
	if string(body) != "ok\nbuild: ok\nstatus: ok\n" {
		t.Errorf("healthy body %q", body)
	}
}
