package provision

import (
	"net/http"
	"strconv"
)

// serveStatus answers GET /status: every node's stage, what it was sent and
// when it was last seen, plus unknown MACs, as JSON from the status store.
func (h *Handler) serveStatus(w http.ResponseWriter, r *http.Request) {
	snap := h.cfg.Fresh()
	h.status.SetUpdateInterval(snap.Server.UpdateInterval.Duration)
	data, err := h.status.JSON(snap.Nodes)
	if err != nil {
		h.metrics.errors.WithLabelValues("status").Inc()
		h.log.Error("status JSON", "err", err)
		http.Error(w, "internal server error: status", http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", strconv.Itoa(len(data)))
	if r.Method != http.MethodHead {
		_, _ = w.Write(data)
	}
}
