package provision

import (
	"fmt"
	"net/http"
)

// authorizePrivate guards what must stay private (the runtime overlay,
// heartbeats): over HTTPS when the server serves it, then authorize.
//
// Why refuse plain HTTP instead of serving both: a node that still asks
// over plain HTTP (an old system overlay without tls_port, a wwclient
// without TLS) would otherwise keep sending its secrets in the clear with
// nobody noticing. The 403 names the HTTPS port, is counted
// (wwserver_http_refusals_total{reason="TLS_REQUIRED"}) and logged, and
// the node's agent says it in its log; rebooting the node gives it the
// system overlay with the pin and tls_port. Secure mode's privileged-port
// rule and the source check apply over HTTPS too: TLS hides the bytes, the
// port still tells root on the node from any user there.
func authorizePrivate(c *call) bool {
	// Both: the listener runs (set at start) and the config still asks for
	// it (turned off without a restart, scripts fetch the runtime overlay
	// over plain HTTP again: bootplan).
	if c.h.tlsPort != 0 && c.snap.Server.TLS.Enabled && c.r.TLS == nil {
		c.deny(http.StatusForbidden, ReasonTLSRequired,
			fmt.Sprintf("tls.enabled: the runtime overlay and heartbeats are served only over HTTPS (port %d)", c.h.tlsPort))
		return false
	}
	return authorize(c)
}
