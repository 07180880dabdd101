package provision

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/server/status"
)

// MaxHeartbeatBytes bounds a heartbeat body.
const MaxHeartbeatBytes = 64 << 10

// serveHeartbeat answers POST /heartbeat/{mac}[?assetkey=K] from wwclient:
// a JSON body {"node","version","uptime_seconds","boot_id","runtime_etag"}
// that refreshes the node's last seen. Same guard as the runtime overlay
// (secure.go). 204 when recorded, 400 for a bad body, 413 for a huge one.
func (h *Handler) serveHeartbeat(w http.ResponseWriter, r *http.Request) {
	c, ok := h.begin(w, r, status.StageHeartbeat)
	if !ok {
		return
	}
	if c.node == nil {
		c.unknownNode()
		return
	}
	if !authorize(c) {
		return
	}
	var hb nodeapi.HeartbeatMessage
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxHeartbeatBytes))
	err := dec.Decode(&hb)
	if err == nil {
		// Exactly one JSON value.
		if _, extra := dec.Token(); !errors.Is(extra, io.EOF) {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err != nil {
		h.metrics.refusals.WithLabelValues(reasonBadRequest).Inc()
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "heartbeat body larger than 64 KiB", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "bad heartbeat JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	if hb.Node != "" && hb.Node != c.node.Name {
		// The node was renamed or its MAC moved; config is the truth.
		h.log.Warn("heartbeat names another node", "mac", c.mac, "config_node", c.node.Name, "says", hb.Node)
	}
	h.status.RecordHeartbeat(c.node.Name, c.mac, c.ip, hb.AgentState)
	w.WriteHeader(http.StatusNoContent)
}
