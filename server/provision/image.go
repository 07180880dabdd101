package provision

import (
	"net/http"

	"github.com/wwcluster/ww/server/status"
)

// serveImage answers GET /image/{mac}: the node's image as a gzip newc cpio
// (iPXE: initrd --name image.img.gz).
func (h *Handler) serveImage(w http.ResponseWriter, r *http.Request) {
	h.serveArtifact(w, r, status.StageImage, labelImage, h.builder.Image, nil)
}
