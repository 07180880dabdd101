package provision

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/wwcluster/ww/server/health"
)

// Health is the part of *health.Registry /healthz reads.
type Health interface {
	Components() (list []health.Component, healthy bool)
}

// serveHealth answers GET /healthz: "ok", or 503 "degraded: …" naming every
// component that is not ok (a failed config reload: the last good config is
// still served; a status file that cannot be written; builds failing, e.g.
// a full disk). The server keeps serving either way; 503 tells the operator
// to look. The lines after the first list each component's state, then
// the warnings (see HealthWarnings).
func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	h.cfg.Fresh() // look at the files as they are now
	var reasons []string
	if err := h.cfg.LastError(); err != nil {
		// Several errors (one per line) stay on the first line.
		reasons = append(reasons, "config reload failed, serving the last good config: "+strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	h.healthMu.Lock()
	checks := h.health
	h.healthMu.Unlock()
	for _, check := range checks {
		if ok, reason := check(); !ok {
			reasons = append(reasons, reason)
		}
	}
	var list []health.Component
	if h.registry != nil {
		list, _ = h.registry.Components()
	}
	for _, c := range list {
		if !c.OK {
			reasons = append(reasons, c.Name+": "+c.Reason)
		}
	}
	h.healthMu.Lock()
	warners := h.warnings
	h.healthMu.Unlock()
	var warnings []string
	for _, warn := range warners {
		warnings = append(warnings, warn()...)
	}
	switch {
	case len(reasons) > 0:
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "degraded: %s\n", strings.Join(reasons, "; "))
	case len(warnings) > 0:
		fmt.Fprintf(w, "ok, with warnings: %s\n", strings.Join(warnings, "; "))
	default:
		fmt.Fprintln(w, "ok")
	}
	for _, c := range list {
		if c.OK {
			fmt.Fprintf(w, "%s: ok\n", c.Name)
		} else {
			fmt.Fprintf(w, "%s: degraded since %s: %s\n", c.Name, c.Since.UTC().Format("2006-01-02T15:04:05Z"), c.Reason)
		}
	}
	for _, warning := range warnings {
		fmt.Fprintf(w, "warning: %s\n", warning)
	}
}

// HealthWarnings lists problems that leave the server serving and healthy
// but some nodes unable to boot, e.g. an image without a kernel. /healthz
// still answers 200, with the first line "ok, with warnings: …" naming them
// and one "warning: …" line each after the components.
type HealthWarnings func() []string

// AddHealthWarnings adds a source of warnings that /healthz asks on every
// request.
func (h *Handler) AddHealthWarnings(w HealthWarnings) {
	h.healthMu.Lock()
	defer h.healthMu.Unlock()
	h.warnings = append(h.warnings[:len(h.warnings):len(h.warnings)], w)
}

// HealthCheck reports a service's health for /healthz: false with the reason
// makes /healthz answer 503 "degraded: reason".
type HealthCheck func() (ok bool, reason string)

// AddHealthCheck adds a check that /healthz runs on every request (e.g. the
// DHCP server's lease store).
func (h *Handler) AddHealthCheck(c HealthCheck) {
	h.healthMu.Lock()
	defer h.healthMu.Unlock()
	h.health = append(h.health[:len(h.health):len(h.health)], c)
}
