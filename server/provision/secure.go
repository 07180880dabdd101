package provision

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/netip"
	"net/url"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi"
)

// authorize applies secure mode and the asset key to a request for node
// c.node (see overlay_runtime.go for the rule and its reasons). It answers
// and returns false when the request is refused; a refused request changes
// nothing in the node's status (see call.deny).
func authorize(c *call) bool {
	if c.snap.Server.IsSecure() {
		if p := sourcePort(c.r.RemoteAddr); p == 0 || p >= 1024 {
			c.deny(http.StatusForbidden, ReasonInsecurePort,
				"secure mode: this is served only to privileged source ports (< 1024), i.e. to root on the node")
			return false
		}
	}
	if c.snap.Server.ChecksSource() && !c.h.fromNodeAddress(c) {
		c.deny(http.StatusForbidden, ReasonWrongSource,
			"secure mode: this is served only to the node's own address (its nodes.toml ipaddr or DHCP lease); "+
				"source_check = false in wwserver.toml allows relayed or NATed nodes")
		return false
	}
	if !c.node.HasAssetKey() {
		return true
	}
	q, err := url.ParseQuery(c.r.URL.RawQuery)
	if err != nil {
		c.h.metrics.refusals.WithLabelValues(reasonBadRequest).Inc()
		http.Error(c.w, "bad query: "+err.Error(), http.StatusBadRequest)
		return false
	}
	keys := q[nodeapi.AssetKeyParam]
	if len(keys) == 0 || keys[0] == "" {
		c.deny(http.StatusUnauthorized, ReasonBadAsset, "this node requires ?assetkey=")
		return false
	}
	if !keyEqual(keys[0], c.node.AssetKey) {
		c.deny(http.StatusForbidden, ReasonBadAsset, "wrong asset key")
		return false
	}
	return true
}

// fromNodeAddress reports whether the request comes from an address the
// node holds (a configured ipaddr of any of its devices, or an active DHCP
// lease of one of its MACs) or from the server's own address. A node with neither cannot be checked and
// passes (as in Warewulf, which checks only nodes with an address).
func (h *Handler) fromNodeAddress(c *call) bool {
	src, err := netip.ParseAddr(c.ip)
	if err != nil {
		return false
	}
	// The server's own address: admin tools on the server host (root there
	// reads the served tree anyway), not a node.
	if self, err := netip.ParseAddr(c.snap.Server.Address); err == nil && self == src.Unmap() {
		return true
	}
	configured := false
	for _, d := range c.node.Network {
		if d.IPAddr == "" {
			continue
		}
		configured = true
		if a, err := netip.ParseAddr(d.IPAddr); err == nil && a.Unmap() == src {
			return true
		}
	}
	if h.leases == nil {
		return !configured
	}
	if mac, _, ok := h.leases.LeaseByIP(src.String()); ok && hasMAC(c.node.Network, mac) {
		return true
	}
	if configured {
		return false
	}
	for _, d := range c.node.Network {
		if d.HWAddr != "" && h.leases.HasLease(d.HWAddr) {
			return false
		}
	}
	return true
}

func hasMAC(devs []config.NetDev, mac string) bool {
	for _, d := range devs {
		if d.HWAddr == mac {
			return true
		}
	}
	return false
}

// keyEqual compares in constant time, length included (hashing first makes
// both sides the same length).
func keyEqual(got, want string) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
