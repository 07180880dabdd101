package provision

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/wwcluster/ww/server/bootplan"
	"github.com/wwcluster/ww/server/bootscript"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/server/status"
	"github.com/wwcluster/ww/server/tftp"
)

// A boot loader on the wrong architecture for its node's image (an arm64
// image on an x86 machine, or the reverse) prints why on the console and
// reports it here before exiting to the firmware (server/bootscript,
// arch.go): iPXE GET /ipxe/{mac}/wrongarch/{arch}, GRUB over TFTP
// grub/MAC/wrongarch/ARCH or GET /grub/{mac}/wrongarch/{arch}. The node's
// status then reads IPXE or GRUB, sent WRONG_ARCH:ARCH.

// ArchBuilder is what the scripts' architecture check needs from the
// Builder: the architecture of the kernel a node boots ("" unknown). A
// Builder without it renders scripts without the check.
type ArchBuilder interface {
	ImageArch(n *config.Node) (string, error)
}

// imageArch is the architecture of c's node's image, "" when unknown (no
// kernel: the kernel route reports that).
func (h *Handler) imageArch(c *call) string {
	ab, ok := h.builder.(ArchBuilder)
	if !ok || c.node == nil {
		return ""
	}
	arch, _ := h.arches.get(c.snap, archKey{c.node.Image, c.node.Kernel}, func() (string, error) {
		arch, err := ab.ImageArch(c.node)
		if err != nil {
			return "", nil // no check in the script, rather than no script
		}
		return arch, nil
	})
	return arch
}

// archKey is what an image's architecture depends on.
type archKey struct{ image, kernel string }

// wrongArchRoutes registers the HTTP reports (see routes.go).
func (h *Handler) wrongArchRoutes(mux *http.ServeMux) {
	for _, r := range []struct {
		route        nodeapi.Route
		label, stage string
	}{{nodeapi.IPXE, labelIPXE, status.StageIPXE}, {nodeapi.GRUB, labelGRUB, status.StageGRUB}} {
		stage := r.stage
		pattern := r.route.Pattern(http.MethodGet) + "/" + bootplan.WrongArchSegment + "/{arch}"
		mux.Handle(pattern, h.instrument(r.label, func(w http.ResponseWriter, req *http.Request) {
			c, ok := h.begin(w, req, stage)
			if !ok {
				return
			}
			body, sent := h.wrongArch(c, req.PathValue("arch"))
			c.record(sent)
			writeText(w, req, body)
		}))
	}
}

// wrongArch logs a wrong-architecture report of c's node and returns a
// body that loads nothing (GRUB sources it, iPXE ignores it) and what to
// record as sent.
func (h *Handler) wrongArch(c *call, loaderArch string) (body []byte, sent string) {
	sent = bootscript.WrongArchSent(loaderArch)
	name, img := "", ""
	if c.node != nil {
		name, img = c.node.Name, c.node.Image
	}
	h.logs.Log("wrong-arch", slog.LevelWarn, "node booted on a machine of another architecture than its image",
		"node", name, "mac", c.mac, "image", img, "image_arch", h.imageArch(c), "loader_arch", strings.TrimPrefix(sent, "WRONG_ARCH:"))
	return []byte("# wwserver: recorded " + sent + "\n"), sent
}

// tftpWrongArch answers GRUB's TFTP report grub/MAC/wrongarch/ARCH (rest
// is MAC/wrongarch/ARCH); ok false when rest is not one.
func (h *Handler) tftpWrongArch(rest, ip string) (*tftp.File, bool) {
	mac, arch, ok := strings.Cut(rest, "/"+bootplan.WrongArchSegment+"/")
	if !ok {
		return nil, false
	}
	c, ok := h.tftpCall(mac, ip, status.StageGRUB)
	if !ok || h.tftpUnicast(c) != nil {
		return nil, false
	}
	body, sent := h.wrongArch(c, arch)
	// Recorded once sent, as every generated file (else the TFTP server
	// records it as a plain TFTP transfer).
	return memFile(body, func() { c.record(sent) }), true
}
