package provision

import (
	"fmt"
	"net/http"
)

// serveHealth answers GET /healthz: "ok", or 503 "degraded: …" when the last
// config reload failed. The server keeps serving the last good config either
// way; 503 only tells the operator the files on disk are not what is served.
func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	h.cfg.Fresh() // look at the files as they are now
	if err := h.cfg.LastError(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "degraded: config reload failed, serving the last good config: %v\n", err)
		return
	}
	fmt.Fprintln(w, "ok")
}
