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

// TestHealthzWarnings: warnings (nodes that cannot boot) keep /healthz at
// 200 but name every problem on the first line and one line each; a
// degraded component still makes it 503, with the warnings listed after.
func TestHealthzWarnings(t *testing.T) {
	e := newEnv(t, true)
	var warnings []string
	e.h.AddHealthWarnings(func() []string { return warnings })
	resp, body := e.get("/healthz")
	wantCode(t, resp, body, http.StatusOK)
	if string(body) != "ok\n" {
		t.Errorf("no warnings: %q", body)
	}
	warnings = []string{`image "default" (2 nodes: n[001-002]): not a kernel`, `image "x" (1 node: n003): no rootfs`}
	resp, body = e.get("/healthz")
	wantCode(t, resp, body, http.StatusOK)
	want := "ok, with warnings: " + warnings[0] + "; " + warnings[1] + "\n" +
		"warning: " + warnings[0] + "\n" + "warning: " + warnings[1] + "\n"
	if string(body) != want {
		t.Errorf("with warnings:\n%s\nwant:\n%s", body, want)
	}
	reg := health.New()
	e.h.registry = reg
	reg.Report("build", errors.New("disk full"))
	resp, body = e.get("/healthz")
	wantCode(t, resp, body, http.StatusServiceUnavailable)
	if first, _, _ := strings.Cut(string(body), "\n"); first != "degraded: build: disk full" || !strings.Contains(string(body), "\nwarning: "+warnings[1]+"\n") {
		t.Errorf("degraded with warnings: %q", body)
	}
}
