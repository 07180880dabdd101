package provision

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/url"
)

// authorize applies secure mode and the asset key to a request for node
// c.node (see overlay_runtime.go for the rule and its reasons). It answers
// and returns false when the request is refused.
func authorize(c *call) bool {
	if c.snap.Server.IsSecure() {
		if p := sourcePort(c.r.RemoteAddr); p == 0 || p >= 1024 {
			c.refuse(http.StatusForbidden, ReasonInsecurePort,
				"secure mode: this is served only to privileged source ports (< 1024), i.e. to root on the node")
			return false
		}
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
	keys := q["assetkey"]
	if len(keys) == 0 || keys[0] == "" {
		c.refuse(http.StatusUnauthorized, ReasonBadAsset, "this node requires ?assetkey=")
		return false
	}
	if !keyEqual(keys[0], c.node.AssetKey) {
		c.refuse(http.StatusForbidden, ReasonBadAsset, "wrong asset key")
		return false
	}
	return true
}

// keyEqual compares in constant time, length included (hashing first makes
// both sides the same length).
func keyEqual(got, want string) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
