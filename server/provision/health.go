package provision

import (
	"fmt"
	"net/http"
	"strings"
)

// serveHealth answers GET /healthz: "ok", or 503 "degraded: …" when the last
// config reload failed. The server keeps serving the last good config either
// way; 503 only tells the operator the files on disk are not what is served.
func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	h.cfg.Fresh() // look at the files as they are now
	var reasons []string
	if err := h.cfg.LastError(); err != nil {
		reasons = append(reasons, fmt.Sprintf("config reload failed, serving the last good config: %v", err))
	}
	h.healthMu.Lock()
	checks := h.health
	h.healthMu.Unlock()
	for _, check := range checks {
		if ok, reason := check(); !ok {
			reasons = append(reasons, reason)
		}
	}
	if len(reasons) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "degraded: %s\n", strings.Join(reasons, "; "))
		return
	}
	fmt.Fprintln(w, "ok")
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
