package provision

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/wwcluster/ww/server/bootplan"
	"github.com/wwcluster/ww/server/bootscript"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/server/status"
)

// serveIPXE answers GET /ipxe/{mac}: the node's iPXE script, which fetches
// the kernel, image and overlays and boots. An unknown MAC gets a script
// that says so, waits and reboots (recorded with no node name, so /status
// lists unknown MACs).
func (h *Handler) serveIPXE(w http.ResponseWriter, r *http.Request) {
	c, ok := h.begin(w, r, status.StageIPXE)
	if !ok {
		return
	}
	if c.node == nil && h.discover != nil {
		if snap, node, err := h.discover.Discover(c.mac); err != nil {
			h.log.Error("discovery failed", "mac", c.mac, "err", err)
		} else if node != nil {
			c.snap, c.node = snap, node
			h.fresh.offer(snap)
		}
	}
	var script []byte
	sent := ReasonNotFound
	if c.node == nil {
		var buf bytes.Buffer
		if err := h.ipxe.RenderUnknown(&buf, c.snap, c.mac); err != nil {
			h.fail(c, "template", err)
			return
		}
		script = buf.Bytes()
		h.metrics.refusals.WithLabelValues(ReasonNotFound).Inc()
		h.logs.Log("ipxe-unknown", slog.LevelInfo, "unknown MAC asked for an iPXE script", "mac", c.mac, "remote", r.RemoteAddr)
	} else {
		digest, err := h.imageDigest(c) // twostage.go
		if err != nil {
			if r.Context().Err() != nil && errors.Is(err, r.Context().Err()) {
				return
			}
			h.fail(c, "build", err)
			return
		}
		req := bootscript.Request{Snap: c.snap, Node: c.node, MAC: c.mac, Servers: h.servers(c.snap), ImageDigest: digest,
			ImageArch: h.imageArch(c)}
		if script, sent, err = h.ipxe.Script(req); err != nil {
			if errors.Is(err, bootscript.ErrNoTemplate) {
				err = notFound{err}
			}
			h.fail(c, "template", err)
			return
		}
	}
	c.record(sent)
	// Header values are shared, pre-canonicalised slices (net/http copies
	// the map before writing it and never modifies values).
	hdr := w.Header()
	hdr["Content-Type"] = headerTextPlain
	hdr["Cache-Control"] = headerNoStore
	hdr["Content-Length"] = []string{strconv.Itoa(len(script))}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(script)
	}
}

// servers are the node-facing addresses (host:port) of the live servers:
// this one first, then the others Peers lists.
func (h *Handler) servers(snap *config.Snapshot) []string {
	if h.peers != nil {
		return bootplan.Servers(nodeapi.HostPort(snap.Server.Address, snap.Server.Port), h.peers.Servers())
	}
	// Alone, the list changes only with the config: made once per
	// snapshot, not per script request. Callers do not modify it.
	if a := h.alone.Load(); a != nil && a.snap == snap {
		return a.list
	}
	a := &aloneServers{snap: snap, list: bootplan.Servers(nodeapi.HostPort(snap.Server.Address, snap.Server.Port), nil)}
	h.alone.Store(a)
	return a.list
}

// aloneServers is servers()'s answer for one snapshot.
type aloneServers struct {
	snap *config.Snapshot
	list []string
}

// notFound marks err as ErrNotFound, keeping its message.
type notFound struct{ error }

func (e notFound) Unwrap() error      { return e.error }
func (notFound) Is(target error) bool { return target == ErrNotFound }

var (
	headerTextPlain = []string{"text/plain; charset=utf-8"}
	headerNoStore   = []string{"no-store"}
)

// fail answers 500 for a server-side error (logged with its detail, which
// the client does not get) and counts it by kind. Missing things (wrapping
// ErrNotFound) answer 404 instead.
func (h *Handler) fail(c *call, kind string, err error) {
	if errors.Is(err, ErrNotFound) {
		h.logs.Log("not-found|"+c.stage, slog.LevelWarn, "not found", "stage", c.stage, "mac", c.mac, "node", nodeName(c), "err", err)
		c.refuse(http.StatusNotFound, ReasonNotFound, "not found: "+stageNoun(c.stage)+" of this node")
		return
	}
	h.metrics.errors.WithLabelValues(kind).Inc()
	h.logs.Log("failed|"+c.stage+"|"+kind, slog.LevelError, "provisioning failed", "stage", c.stage, "mac", c.mac, "node", nodeName(c), "err", err)
	c.record("ERROR")
	http.Error(c.w, "internal server error: "+stageNoun(c.stage)+" (see the server log)", http.StatusInternalServerError)
}

func nodeName(c *call) string {
	if c.node == nil {
		return ""
	}
	return c.node.Name
}

func stageNoun(stage string) string {
	switch stage {
	case status.StageIPXE:
		return "iPXE script"
	case status.StageKernel:
		return "kernel"
	case status.StageImage:
		return "image"
	case status.StageSystemOverlay:
		return "system overlay"
	case status.StageRuntimeOverlay:
		return "runtime overlay"
	case status.StageHeartbeat:
		return "heartbeat"
	}
	return stage
}
