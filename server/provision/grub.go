package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/wwcluster/ww/server/bootscript"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/server/status"
	"github.com/wwcluster/ww/server/tftp"
)

// GRUB boots (bootloader = "grub": shim, then GRUB, for Secure Boot) ask
// for, in order: /grub/grub.cfg (the same for every machine: GRUB names
// no MAC), which loads /grub/{mac}, which loads the kernel and initrds.
// Debian's signed GRUB has no http module, so on UEFI PXE all of it comes
// over TFTP, under the HTTP routes' paths (TFTPFile); a GRUB with http
// uses the HTTP routes (serveGRUB, serveGRUBBootstrap).

// serveGRUB answers GET /grub/{mac}: the node's GRUB config, files via
// HTTP. An unknown MAC gets a config that says so, waits and reboots
// (recorded with no node name, as for iPXE).
func (h *Handler) serveGRUB(w http.ResponseWriter, r *http.Request) {
	c, ok := h.begin(w, r, status.StageGRUB)
	if !ok {
		return
	}
	script, sent, err := h.grubScript(r.Context(), c, bootscript.ViaHTTP)
	if err != nil {
		if r.Context().Err() != nil && errors.Is(err, r.Context().Err()) {
			return
		}
		h.fail(c, "template", err)
		return
	}
	c.record(sent)
	writeText(w, r, script)
}

// serveGRUBBootstrap answers GET /grub/grub.cfg (GRUB loaded by UEFI HTTP
// boot, with http built in): loads /grub/${net_default_mac} over HTTP.
func (h *Handler) serveGRUBBootstrap(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := h.grub.Bootstrap(&buf, h.servers(h.fresh.get()), bootscript.ViaHTTP); err != nil {
		h.metrics.errors.WithLabelValues("template").Inc()
		h.log.Error("GRUB bootstrap config", "err", err)
		http.Error(w, "internal server error: GRUB config (see the server log)", http.StatusInternalServerError)
		return
	}
	writeText(w, r, buf.Bytes())
}

func writeText(w http.ResponseWriter, r *http.Request, body []byte) {
	hdr := w.Header()
	hdr["Content-Type"] = headerTextPlain
	hdr["Cache-Control"] = headerNoStore
	hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// grubScript is the GRUB config of c's node, files via via: the
// unknown-node config for a MAC no node has (after discovery, as for
// iPXE). sent is what to record.
func (h *Handler) grubScript(ctx context.Context, c *call, via string) (script []byte, sent string, err error) {
	if c.node == nil && h.discover != nil {
		if snap, node, err := h.discover.Discover(c.mac); err != nil {
			h.log.Error("discovery failed", "mac", c.mac, "err", err)
		} else if node != nil {
			c.snap, c.node = snap, node
			h.fresh.offer(snap)
		}
	}
	if c.node == nil {
		var buf bytes.Buffer
		if err := h.grub.RenderUnknown(&buf, c.snap, c.mac); err != nil {
			return nil, "", err
		}
		h.metrics.refusals.WithLabelValues(ReasonNotFound).Inc()
		h.logs.Log("grub-unknown", slog.LevelInfo, "unknown MAC asked for a GRUB config", "mac", c.mac, "remote", c.ip, "via", via)
		return buf.Bytes(), ReasonNotFound, nil
	}
	digest, err := h.rememberedDigest(c, func() (string, error) { return h.twoStageDigest(ctx, c) }) // twostage.go
	if err != nil {
		return nil, "", err
	}
	req := bootscript.Request{Snap: c.snap, Node: c.node, MAC: c.mac, Servers: h.servers(c.snap), Via: via, ImageDigest: digest,
		ImageArch: h.imageArch(c)}
	return h.grub.Script(req)
}

// tftpRoutes are the per-node routes GRUB fetches over TFTP, with their
// status stage and builder method.
func (h *Handler) tftpRoutes() []struct {
	route nodeapi.Route
	stage string
	get   getArtifact
} {
	return []struct {
		route nodeapi.Route
		stage string
		get   getArtifact
	}{
		{nodeapi.Kernel, status.StageKernel, h.builder.Kernel},
		{nodeapi.Image, status.StageImage, h.builder.Image},
		{nodeapi.SystemOverlay, status.StageSystemOverlay, h.builder.SystemOverlay},
		{nodeapi.RuntimeOverlay, status.StageRuntimeOverlay, h.builder.RuntimeOverlay},
		{nodeapi.Modules, status.StageKernel, h.kernelModules}, // two-stage (twostage.go)
	}
}

// TFTPFile answers the names GRUB fetches over TFTP (tftp.Generator):
// grub/grub.cfg, grub/MAC (the node's config, files via TFTP) and a
// node's kernel/MAC, image/MAC, overlay/system/MAC and, when its config
// would fetch it (not in secure mode, no asset key), overlay/runtime/MAC.
// Each is recorded as its HTTP route is, once the transfer completed.
func (h *Handler) TFTPFile(ctx context.Context, name, ip string) (*tftp.File, bool, error) {
	if name == nodeapi.TFTPName(nodeapi.GRUBConfig) {
		var buf bytes.Buffer
		if err := h.grub.Bootstrap(&buf, h.servers(h.fresh.get()), bootscript.ViaTFTP); err != nil {
			return nil, true, err
		}
		return memFile(buf.Bytes(), nil), true, nil
	}
	if rest, ok := strings.CutPrefix(name, nodeapi.TFTPName(string(nodeapi.GRUB))); ok {
		if f, ok := h.tftpWrongArch(rest, ip); ok {
			return f, true, nil
		}
		c, ok := h.tftpCall(rest, ip, status.StageGRUB)
		if !ok {
			return nil, false, nil
		}
		if err := h.tftpUnicast(c); err != nil {
			return nil, true, err
		}
		script, sent, err := h.grubScript(ctx, c, bootscript.ViaTFTP)
		if err != nil {
			h.metrics.errors.WithLabelValues("template").Inc()
			return nil, true, fmt.Errorf("GRUB config of %s: %w", c.mac, err)
		}
		return memFile(script, func() { c.record(sent) }), true, nil
	}
	for _, rt := range h.tftpRoutes() {
		rest, ok := strings.CutPrefix(name, nodeapi.TFTPName(string(rt.route)))
		if !ok {
			continue
		}
		c, ok := h.tftpCall(rest, ip, rt.stage)
		if !ok {
			return nil, false, nil
		}
		if err := h.tftpUnicast(c); err != nil {
			return nil, true, err
		}
		if c.node == nil {
			c.record(ReasonNotFound)
			return nil, true, fmt.Errorf("no node has MAC %s: %w", c.mac, fs.ErrNotExist)
		}
		if rt.route == nodeapi.RuntimeOverlay {
			// As the GRUB config: never to a boot loader in secure mode
			// (no privileged port) or for a node with an asset key.
			// Counted and logged, never recorded: whoever asked cannot
			// be shown to be the node (as for HTTP refusals, call.deny).
			tlsOnly := h.tlsPort != 0 && c.snap.Server.TLS.Enabled
			if c.snap.Server.IsSecure() || c.node.HasAssetKey() || tlsOnly {
				reason := ReasonInsecurePort
				if c.node.HasAssetKey() {
					reason = ReasonBadAsset
				} else if tlsOnly {
					reason = ReasonTLSRequired
				}
				h.metrics.refusals.WithLabelValues(reason).Inc()
				h.logs.Log("refused|tftp|"+reason, slog.LevelInfo, "refused", "stage", c.stage, "mac", c.mac, "node", c.node.Name,
					"remote", ip, "via", "tftp", "reason", reason)
				return nil, true, fmt.Errorf("runtime overlay of %s over TFTP refused (%s): %w", c.node.Name, reason, fs.ErrNotExist)
			}
		}
		art, err := rt.get(ctx, c.snap, c.node)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				c.record(ReasonNotFound)
				return nil, true, fmt.Errorf("%s of %s: %w (%w)", stageNoun(rt.stage), c.node.Name, fs.ErrNotExist, err)
			}
			h.metrics.errors.WithLabelValues("build").Inc()
			c.record("ERROR")
			return nil, true, fmt.Errorf("%s of %s: %w", stageNoun(rt.stage), c.node.Name, err)
		}
		f, err := art.Open()
		if err != nil {
			h.metrics.errors.WithLabelValues("open").Inc()
			return nil, true, fmt.Errorf("open %s of %s: %w", stageNoun(rt.stage), c.node.Name, err)
		}
		return &tftp.File{Content: f, Size: art.Size, Sent: func() { c.record(art.Name) }}, true, nil
	}
	return nil, false, nil
}

// tftpCall is a call for a TFTP request of mac (a name's last part) from
// ip; false when it is no MAC (e.g. GRUB's grub/x86_64-efi/fs.lst): that
// name is left to the TFTP directory.
func (h *Handler) tftpCall(rawMAC, ip, stage string) (*call, bool) {
	mac, err := nodeapi.NormalizeMAC(rawMAC)
	if err != nil {
		return nil, false
	}
	snap := h.fresh.get()
	return &call{h: h, stage: stage, mac: mac, ip: ip, snap: snap, node: snap.Nodes.ByMAC[mac]}, true
}

// tftpUnicast refuses (not found, nothing recorded) a MAC no network card
// can have, as begin answers 400 BAD_MAC: it must not claim a discoverable
// node or an unknown-MAC slot.
func (h *Handler) tftpUnicast(c *call) error {
	if err := config.CheckUnicastMAC(c.mac); err != nil {
		h.metrics.refusals.WithLabelValues(ReasonBadMAC).Inc()
		return fmt.Errorf("%w: %v", fs.ErrNotExist, err)
	}
	return nil
}

func memFile(b []byte, sent func()) *tftp.File {
	return &tftp.File{Content: readSeekNopCloser{bytes.NewReader(b)}, Size: int64(len(b)), Sent: sent}
}

type readSeekNopCloser struct{ io.ReadSeeker }

func (readSeekNopCloser) Close() error { return nil }
