package provision

import (
	"net/http"
	"os"
	"strings"

	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/server/regularfile"
)

// serveIPXEBin answers GET /ipxe-bin/{file...}: the iPXE binaries directory
// (wwserver.toml [tftp] dir, default /usr/lib/ipxe), for UEFI HTTP boot.
// os.Root confines lookups to that directory, symlinks included.
// The boot files wwserver.toml names were resolved when it loaded (trusted
// config: Debian's ipxe.efi is a symlink to /boot) and are served from there.
func (h *Handler) serveIPXEBin(w http.ResponseWriter, r *http.Request) {
	srv := h.cfg.Fresh().Server
	dir := srv.TFTP.Dir
	name := r.PathValue("file")
	var f *os.File
	var err error
	if p, ok := srv.BootFile(name); ok {
		f, _, err = regularfile.OpenPath(p) // resolved at config load (trusted)
	} else {
		root, rerr := os.OpenRoot(dir)
		if rerr != nil {
			h.metrics.errors.WithLabelValues("open").Inc()
			h.log.Error("iPXE binaries directory", "dir", dir, "err", rerr)
			http.Error(w, "iPXE binaries directory unavailable", http.StatusInternalServerError)
			return
		}
		defer root.Close()
		f, _, err = regularfile.Open(root, name) // FIFOs and devices are refused, never opened
	}
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
	h.serveContent(w, r, fi.Name(), fi.ModTime(), f, fi.Size())
}

// collapseBootBinSlashes turns repeated slashes of a /ipxe-bin/ path into
// one. shim under UEFI HTTP boot asks for the next stage as the boot URL's
// directory + "/" + its name ("/ipxe-bin//grubaa64.efi"), and http.ServeMux
// would answer that with a redirect to the clean path, which shim does not
// follow ("HTTP Error"). Only slashes are collapsed: ".." still goes to
// the mux's redirect, and the file is still opened inside the directory.
func collapseBootBinSlashes(r *http.Request) {
	p := r.URL.Path
	if !strings.HasPrefix(p, nodeapi.IPXEBin) || !strings.Contains(p, "//") {
		return
	}
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	r.URL.Path, r.URL.RawPath = p, ""
}
