package provision

import (
	"encoding/json"
	"net"
	"net/http"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/status"
)

// StatusPruner is the part of *status.Store `wwserver status prune` uses:
// config edits never drop status, only this explicit request does.
type StatusPruner interface {
	Forget(names ...string) []string
	ForgetRemoved(nodes *config.Nodes) []string
}

// maxPruneBody bounds the request (a list of names).
const maxPruneBody = 1 << 20

// serveStatusPrune answers POST /status/prune, for the CLI on the server
// host only (a loopback source address): it drops status history.
func (h *Handler) serveStatusPrune(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		http.Error(w, "forbidden: status prune is accepted from the server host (loopback) only", http.StatusForbidden)
		return
	}
	p, ok := h.status.(StatusPruner)
	if !ok {
		http.Error(w, "status prune not supported by this status store", http.StatusNotImplemented)
		return
	}
	var req status.PruneRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPruneBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "bad request: want JSON {\"nodes\": [NAME...], \"removed\": BOOL}: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(req.Nodes) == 0 && !req.Removed {
		http.Error(w, "bad request: name nodes, or set removed", http.StatusBadRequest)
		return
	}
	resp := status.PruneResponse{Pruned: []string{}}
	resp.Pruned = append(resp.Pruned, p.Forget(req.Nodes...)...)
	if req.Removed {
		resp.Pruned = append(resp.Pruned, p.ForgetRemoved(h.cfg.Fresh().Nodes)...)
	}
	h.log.Info("status pruned", "nodes", resp.Pruned)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}
