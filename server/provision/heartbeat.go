package provision

import (
	"encoding/json"
	"errors"
	"fmt"
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
	var hb nodeapi.HeartbeatMessage
	c, ok := h.nodePost(w, r, status.StageHeartbeat, "heartbeat", MaxHeartbeatBytes, false, &hb, nil)
	if !ok {
		return
	}
	if hb.Node != "" && hb.Node != c.node.Name {
		// The node was renamed or its MAC moved; config is the truth.
		h.log.Warn("heartbeat names another node", "mac", c.mac, "config_node", c.node.Name, "says", hb.Node)
	}
	h.status.RecordHeartbeat(c.node.Name, c.mac, c.ip, hb.AgentState)
	w.WriteHeader(http.StatusNoContent)
}

// nodePost is the common start of a node's own POST (heartbeat, progress):
// the guard of secure.go, then exactly one JSON object of at most max bytes
// decoded into v (strict: no unknown fields) and checked by valid (may be
// nil). When it returns false it has answered the request itself: 404 for
// an unknown node, the guard's refusal, 413 or 400 with the reason.
func (h *Handler) nodePost(w http.ResponseWriter, r *http.Request, stage, what string, max int64, strict bool,
	v any, valid func() error) (*call, bool) {
	c, ok := h.begin(w, r, stage)
	if !ok {
		return nil, false
	}
	if c.node == nil {
		c.unknownNode()
		return nil, false
	}
	guard := authorize
	if stage == status.StageHeartbeat {
		guard = authorizePrivate // progress is not private: stage 2 posts it over plain HTTP
	}
	if !guard(c) {
		return nil, false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, max))
	if strict {
		dec.DisallowUnknownFields()
	}
	err := dec.Decode(v)
	if err == nil {
		// Exactly one JSON value.
		if _, extra := dec.Token(); !errors.Is(extra, io.EOF) {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err == nil && valid != nil {
		err = valid()
	}
	if err != nil {
		h.metrics.refusals.WithLabelValues(reasonBadRequest).Inc()
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("%s body larger than %d KiB", what, max>>10), http.StatusRequestEntityTooLarge)
			return nil, false
		}
		http.Error(w, "bad "+what+" JSON: "+err.Error(), http.StatusBadRequest)
		return nil, false
	}
	return c, true
}
