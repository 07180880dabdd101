package provision

import (
	"net/http"

	"github.com/wwcluster/ww/server/status"
)

// serveSystemOverlay answers GET /overlay/system/{mac}: the node's system
// overlays, rendered for it (iPXE: initrd --name system.img.gz). Fetched
// once per boot; unguarded like the image, so it must hold no secrets.
func (h *Handler) serveSystemOverlay(w http.ResponseWriter, r *http.Request) {
	h.serveArtifact(w, r, status.StageSystemOverlay, labelSystem, h.builder.SystemOverlay, nil)
}
