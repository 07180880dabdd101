package provision

import (
	"net/http"
	"os"

	"github.com/wwcluster/ww/server/regularfile"
)

// serveIPXEBin answers GET /ipxe-bin/{file...}: the iPXE binaries directory
// (wwserver.toml [tftp] dir, default /usr/lib/ipxe), for UEFI HTTP boot.
// os.Root confines lookups to that directory, symlinks included.
func (h *Handler) serveIPXEBin(w http.ResponseWriter, r *http.Request) {
	dir := h.cfg.Fresh().Server.TFTP.Dir
	name := r.PathValue("file")
	root, err := os.OpenRoot(dir)
	if err != nil {
		h.metrics.errors.WithLabelValues("open").Inc()
		h.log.Error("iPXE binaries directory", "dir", dir, "err", err)
		http.Error(w, "iPXE binaries directory unavailable", http.StatusInternalServerError)
		return
	}
	defer root.Close()
	f, _, err := regularfile.Open(root, name) // FIFOs and devices are refused, never opened
	if err != nil {
		h.metrics.refusals.WithLabelValues(ReasonNotFound).Inc()
		http.Error(w, "no such iPXE binary", http.StatusNotFound)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		h.metrics.refusals.WithLabelValues(ReasonNotFound).Inc()
		http.Error(w, "no such iPXE binary", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}
