package provision

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/server/status"
)

// Reasons a request is refused for, counted in wwserver_http_refusals_total.
// NOT_FOUND is also recorded as Event.Sent; the others never touch status
// (see call.deny).
const (
	ReasonNotFound     = "NOT_FOUND"
	ReasonBadAsset     = "BAD_ASSET"
	ReasonInsecurePort = "INSECURE_PORT"
	ReasonWrongSource  = "WRONG_SOURCE"
	ReasonTLSRequired  = "TLS_REQUIRED"
	// ReasonBadMAC: a MAC no network card has (all zeros, broadcast,
	// multicast) in the URL; never looked up, recorded or discovered.
	ReasonBadMAC     = "BAD_MAC"
	reasonBadRequest = "BAD_REQUEST"
)

// call is one request to a per-node route, after its MAC was parsed and its
// node looked up in the current config snapshot.
type call struct {
	h     *Handler
	w     http.ResponseWriter
	r     *http.Request
	stage string // status stage, e.g. status.StageKernel
	mac   string // normalised
	ip    string // source address
	snap  *config.Snapshot
	node  *config.Node // nil for an unknown MAC
}

// begin parses {mac} and looks the node up. A bad MAC (unparsable, or all
// zeros, broadcast or multicast) is answered with 400 and ok is false; an
// unknown MAC is not an error here (node is nil).
func (h *Handler) begin(w http.ResponseWriter, r *http.Request, stage string) (c *call, ok bool) {
	raw := r.PathValue(nodeapi.MACWildcard)
	mac, err := nodeapi.NormalizeMAC(raw)
	if err != nil {
		h.metrics.refusals.WithLabelValues(reasonBadRequest).Inc()
		http.Error(w, "bad MAC address in the URL: "+err.Error(), http.StatusBadRequest)
		return nil, false
	}
	snap := h.fresh.get()
	node := snap.Nodes.ByMAC[mac]
	// No node can have a MAC that is not a network card's (config
	// validation refuses them), so only an unknown one needs the check: it
	// must not claim a discoverable node or an unknown-MAC slot.
	if node == nil {
		if err := config.CheckUnicastMAC(mac); err != nil {
			h.metrics.refusals.WithLabelValues(ReasonBadMAC).Inc()
			http.Error(w, "bad MAC address in the URL: "+err.Error(), http.StatusBadRequest)
			return nil, false
		}
	}
	return &call{
		h: h, w: w, r: r, stage: stage, mac: mac,
		ip:   remoteIP(r.RemoteAddr),
		snap: snap,
		node: node,
	}, true
}

// record notes what was sent (or why not) in the status store. HEAD
// requests only probe, so they are not recorded. (A TFTP call has no r.)
func (c *call) record(sent string) {
	if c.r != nil && c.r.Method == http.MethodHead {
		return
	}
	name := ""
	if c.node != nil {
		name = c.node.Name
	}
	c.h.status.Record(status.Event{MAC: c.mac, Node: name, IP: c.ip, Stage: c.stage, Sent: sent})
}

// refuse answers code with msg, counts and records reason and logs it.
// Only for answers about the request's own outcome that anyone may cause
// (an unknown MAC, a file that does not exist); a request refused for who
// sent it is answered by deny, which records nothing.
func (c *call) refuse(code int, reason, msg string) {
	c.record(reason)
	c.deny(code, reason, msg)
}

// deny answers code with msg, counts reason and logs it, and changes
// nothing in the status store: a request that was not authorized (wrong
// source port or address, bad asset key) comes from someone who is not, or
// cannot be shown to be, the node, so it must not move the node's stage,
// address or last seen. Otherwise anyone could keep a dead node looking
// alive, or hide a live one behind a refusal. Refusals are visible in
// wwserver_http_refusals_total{reason} and the (throttled) log.
func (c *call) deny(code int, reason, msg string) {
	c.h.metrics.refusals.WithLabelValues(reason).Inc()
	node := ""
	if c.node != nil {
		node = c.node.Name
	}
	c.h.logs.Log("refused|"+c.stage+"|"+reason, slog.LevelInfo, "refused", "stage", c.stage, "mac", c.mac, "node", node,
		"remote", c.r.RemoteAddr, "code", code, "reason", reason, "msg", msg)
	if code == http.StatusUnauthorized {
		c.w.Header().Set("WWW-Authenticate", `AssetKey realm="wwserver"`)
	}
	http.Error(c.w, msg, code)
}

// unknownNode answers 404 for a MAC no node has, and records it with an
// empty node name so /status lists unknown MACs.
func (c *call) unknownNode() {
	c.refuse(http.StatusNotFound, ReasonNotFound, fmt.Sprintf("no node has MAC %s", c.mac))
}

// remoteIP is the address part of a RemoteAddr ("1.2.3.4:5678").
func remoteIP(remote string) string {
	// IPv4 "a.b.c.d:port" (every request of an IPv4 network): the
	// address is a substring, no parse and no allocation.
	if i := strings.LastIndexByte(remote, ':'); i > 0 && strings.IndexByte(remote[:i], ':') < 0 {
		if _, err := netip.ParseAddr(remote[:i]); err == nil {
			return remote[:i]
		}
	}
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return remote
	}
	return ap.Addr().Unmap().String()
}

// sourcePort is the port part of a RemoteAddr, 0 when there is none.
func sourcePort(remote string) uint16 {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return 0
	}
	return ap.Port()
}
