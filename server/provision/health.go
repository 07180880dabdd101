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
// to look. The lines after the first list each component's state.
func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	h.cfg.Fresh() // look at the files as they are now
	var list []health.Component
	if h.health != nil {
		list, _ = h.health.Components()
	}
	var bad []string
	if err := h.cfg.LastError(); err != nil {
		bad = append(bad, fmt.Sprintf("config reload failed, serving the last good config: %v", err))
	}
	for _, c := range list {
		if !c.OK {
			bad = append(bad, c.Name+": "+c.Reason)
		}
	}
	if len(bad) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "degraded: %s\n", strings.Join(bad, "; "))
	} else {
		fmt.Fprintln(w, "ok")
	}
	for _, c := range list {
		if c.OK {
			fmt.Fprintf(w, "%s: ok\n", c.Name)
		} else {
			fmt.Fprintf(w, "%s: degraded since %s: %s\n", c.Name, c.Since.UTC().Format("2006-01-02T15:04:05Z"), c.Reason)
		}
	}
}
