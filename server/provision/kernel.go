package provision

import (
	"net/http"

	"github.com/wwcluster/ww/server/status"
)

// serveKernel answers GET /kernel/{mac}: the kernel of the node's image
// (iPXE: kernel --name kernel).
func (h *Handler) serveKernel(w http.ResponseWriter, r *http.Request) {
	h.serveArtifact(w, r, status.StageKernel, labelKernel, h.builder.Kernel, nil)
}
