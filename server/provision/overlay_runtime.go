package provision

import (
	"net/http"

	"github.com/wwcluster/ww/server/status"
)

// serveRuntimeOverlay answers GET /overlay/runtime/{mac}[?assetkey=K]: the
// node's runtime overlays, rendered for it. wwclient pulls it after boot and
// then every update_interval; in insecure mode the iPXE script fetches it
// too (initrd --name runtime.img.gz). It is guarded by authorize (secure.go).
//
// The secure-mode rule, and why:
//
// The runtime overlay is where secrets go (keys, accounts), so secure mode
// serves it only to requests from a privileged source port (< 1024): on a
// node only root can bind one, so an unprivileged user on a node cannot
// fetch it. iPXE cannot choose its source port, so its fetch can never meet
// that rule, and no other marker can stand in for it: a User-Agent
// containing "iPXE", a ?boot=1 parameter, a time window after the iPXE
// script was served, even a one-time token rendered into the script can all
// be produced by any user on the running node, because the script itself is
// served to anyone who knows the MAC. Any such exception makes the port
// rule decorative. So there is no exception:
//
//   - secure mode: every runtime-overlay request (and heartbeat) must come
//     from a port < 1024, whatever it claims to be. The iPXE script is
//     rendered without the runtime-overlay download (and without its
//     initrd=) rather than letting it fail and retry; the node boots with
//     the image and system overlay, and wwclient, running as root, pulls
//     the runtime overlay from a privileged port as soon as the network is
//     up. Trade-off: runtime files appear seconds after boot instead of in
//     the initramfs, so nothing needed before wwclient's first pull may live
//     in a runtime overlay (put it in a system overlay).
//   - source address (secure mode, source_check = true, the default): a
//     node's runtime overlay and heartbeats are answered only from an
//     address the node holds: a nodes.toml ipaddr of one of its devices or
//     an active DHCP lease of one of its MACs. Otherwise root on any host of
//     the network could fetch another node's overlay or heartbeat in its
//     name. A node with neither cannot be checked and passes. NAT or a relay
//     hides the node's address: source_check = false turns the check off.
//   - asset key: a node with one gets its runtime overlay (and heartbeats
//     are accepted) only with ?assetkey= matching, in secure mode or not:
//     401 without a key, 403 with a wrong one, compared in constant time.
//     The key is never rendered into the iPXE script (served to anyone who
//     knows the MAC, it would make the key public), so for such a node the
//     script does not fetch the runtime overlay in insecure mode either.
//   - insecure mode without an asset key: anyone may fetch it, and the iPXE
//     script does, so runtime files are there from the first instant.
//
// Refusals answer 403 INSECURE_PORT / 403 WRONG_SOURCE / 401 or 403 BAD_ASSET,
// in that order of checks, so a prober learns nothing about asset keys.
// They are counted (wwserver_http_refusals_total{reason}) and logged, never
// recorded as the node's stage, address or last seen: only the node's own
// accepted requests may change those. Nothing is built for a refused
// request, and a node only ever gets its own files.
func (h *Handler) serveRuntimeOverlay(w http.ResponseWriter, r *http.Request) {
	h.serveArtifact(w, r, status.StageRuntimeOverlay, labelRuntime, h.builder.RuntimeOverlay, authorizePrivate)
}
