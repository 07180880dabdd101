package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
	"github.com/wwcluster/ww/server/status"
)

// The two-stage boot (nodes.toml boot = "twostage", see server/nodeapi):
// iPXE loads the kernel, the network drivers (GET /modules/{mac}) and the
// overlays, and boots with wwimage=DIGEST (server/bootplan); wwclient then
// fetches the image index (GET /index/{mac}, whose sha256 is DIGEST), every
// chunk it lists (GET /chunk/{sha256}, from any server that has it) and
// reports its progress (POST /progress/{mac}).

// Route labels of the two-stage routes.
const (
	labelImageIndex = "image-index"
	labelModules    = "modules"
	labelChunk      = "chunk"
	labelProgress   = "progress"
)

// Names recorded as sent (the builder's names; see server/build).
const (
	sentImageIndex = "__IMAGE__.index"
)

// Reasons a node may report in POST /progress (recorded as sent).
const (
	ReasonNoMemory    = nodeapi.ReasonNoMemory
	ReasonImageFailed = nodeapi.ReasonImageFailed
)

// ImageIndex is a node image's chunk index as the builder made it.
type ImageIndex struct {
	Digest  string // hex sha256 of Data
	Data    []byte // served as is; shared, never modified
	ModTime time.Time
}

// TwoStageBuilder is what the two-stage routes need from the Builder. A
// Builder without it answers them 404 and renders two-stage nodes' scripts
// as single-stage ones.
type TwoStageBuilder interface {
	ImageIndex(ctx context.Context, snap *config.Snapshot, n *config.Node) (*ImageIndex, error)
	// KernelModules is the kernel's network drivers for stage 1.
	KernelModules(ctx context.Context, snap *config.Snapshot, n *config.Node) (*Artifact, error)
	// Chunk is a stored chunk by digest (ErrNotFound when absent).
	Chunk(digest string) (*Artifact, error)
}

func (h *Handler) twoStage() (TwoStageBuilder, bool) {
	tb, ok := h.builder.(TwoStageBuilder)
	return tb, ok
}

// twoStageRoutes registers the two-stage routes (see routes.go).
func (h *Handler) twoStageRoutes(mux *http.ServeMux) {
	get := http.MethodGet
	mux.Handle(nodeapi.Modules.Pattern(get), h.instrument(labelModules, h.serveModules))
	mux.Handle(nodeapi.ImageIndex.Pattern(get), h.instrument(labelImageIndex, h.serveImageIndex))
	mux.Handle(nodeapi.ChunkPattern(), h.instrument(labelChunk, h.serveChunk))
	mux.Handle(nodeapi.Progress.Pattern(http.MethodPost), h.instrument(labelProgress, h.serveProgress))
}

// imageDigest returns the digest for a two-stage node's iPXE script ("" for
// other nodes), building the chunked image when it is not built yet. The
// request's read deadline is lifted for the build (see serveArtifact) and
// its write deadline restarted after it.
func (h *Handler) imageDigest(c *call) (string, error) {
	return h.rememberedDigest(c, func() (string, error) {
		rc := http.NewResponseController(c.w)
		_ = rc.SetReadDeadline(time.Time{})
		d, err := h.twoStageDigest(c.r.Context(), c)
		_ = rc.SetWriteDeadline(time.Now().Add(WriteTimeout))
		return d, err
	})
}

// rememberedDigest is the digest of a two-stage node's image as
// remembered for the snapshot (see snapMemo), asking find when it is not;
// "" for other nodes.
func (h *Handler) rememberedDigest(c *call, find func() (string, error)) (string, error) {
	if c.node == nil || !c.node.TwoStage() {
		return "", nil
	}
	return h.digests.get(c.snap, c.node.Image, find)
}

// twoStageDigest is the image digest of c's node when it boots in two
// stages and this server builds chunked images, else "".
func (h *Handler) twoStageDigest(ctx context.Context, c *call) (string, error) {
	if c.node == nil || !c.node.TwoStage() {
		return "", nil
	}
	tb, ok := h.twoStage()
	if !ok {
		return "", nil
	}
	ix, err := tb.ImageIndex(ctx, c.snap, c.node)
	if err != nil {
		return "", err
	}
	return ix.Digest, nil
}

// kernelModules is TwoStageBuilder.KernelModules as a getArtifact (GRUB's
// TFTP routes); ErrNotFound without a two-stage builder.
func (h *Handler) kernelModules(ctx context.Context, snap *config.Snapshot, n *config.Node) (*Artifact, error) {
	tb, ok := h.twoStage()
	if !ok {
		return nil, fmt.Errorf("network drivers: this server does not build two-stage images: %w", ErrNotFound)
	}
	return tb.KernelModules(ctx, snap, n)
}

// serveModules answers GET /modules/{mac}: the network drivers of
// the node's kernel (iPXE: initrd --name modules.img.gz), recorded under
// the KERNEL stage.
func (h *Handler) serveModules(w http.ResponseWriter, r *http.Request) {
	tb, ok := h.twoStage()
	if !ok {
		http.Error(w, "this server does not build two-stage images", http.StatusNotFound)
		return
	}
	h.serveArtifact(w, r, status.StageKernel, labelModules, tb.KernelModules, nil)
}

// serveImageIndex answers GET /index/{mac}: the node's image index
// (JSON, see package chunkimage), ETag = its digest. Like the image it is
// served to anyone who knows the MAC.
func (h *Handler) serveImageIndex(w http.ResponseWriter, r *http.Request) {
	c, ok := h.begin(w, r, status.StageImage)
	if !ok {
		return
	}
	if c.node == nil {
		c.unknownNode()
		return
	}
	tb, ok := h.twoStage()
	if !ok {
		c.refuse(http.StatusNotFound, ReasonNotFound, "this server does not build two-stage images")
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	ix, err := tb.ImageIndex(r.Context(), c.snap, c.node)
	if err != nil {
		if r.Context().Err() != nil && errors.Is(err, r.Context().Err()) {
			return
		}
		h.fail(c, "build", err)
		return
	}
	_ = rc.SetWriteDeadline(time.Now().Add(h.writeBudget(int64(len(ix.Data)))))
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", quoteETag(ix.Digest))
	rw := &countingWriter{ResponseWriter: w, onHeader: func(code int) {
		if code < 400 {
			c.record(sentImageIndex)
		}
	}}
	http.ServeContent(rw, r, "index.json", ix.ModTime, bytes.NewReader(ix.Data))
}

// serveChunk answers GET /chunk/{sha256}: one compressed chunk, immutable
// (ETag = its digest, cacheable forever), with Range. Not per node and not
// recorded in status: a node's progress comes from POST /progress.
func (h *Handler) serveChunk(w http.ResponseWriter, r *http.Request) {
	digest := r.PathValue(nodeapi.ChunkWildcard)
	if !chunkimage.ValidDigest(digest) {
		h.metrics.refusals.WithLabelValues(reasonBadRequest).Inc()
		http.Error(w, "bad chunk name: want 64 lower-case hex digits (a sha256)", http.StatusBadRequest)
		return
	}
	tb, ok := h.twoStage()
	if !ok {
		http.Error(w, "this server does not build two-stage images", http.StatusNotFound)
		return
	}
	art, err := tb.Chunk(digest)
	if errors.Is(err, ErrNotFound) {
		h.metrics.refusals.WithLabelValues(ReasonNotFound).Inc()
		h.logs.Log("not-found|chunk", slog.LevelWarn, "chunk not in the store", "sha256", digest, "remote", r.RemoteAddr)
		http.Error(w, "chunk "+digest+" is not in this server's chunk store (not part of an image it has built; ask another server)", http.StatusNotFound)
		return
	}
	if err != nil {
		h.metrics.errors.WithLabelValues("chunk").Inc()
		h.logs.Log("failed|chunk", slog.LevelError, "serving a chunk failed", "sha256", digest, "err", err)
		http.Error(w, "internal server error: chunk (see the server log)", http.StatusInternalServerError)
		return
	}
	f, err := art.Open()
	if err != nil {
		h.metrics.errors.WithLabelValues("chunk").Inc()
		h.logs.Log("failed|chunk", slog.LevelError, "opening a chunk failed", "sha256", digest, "err", err)
		http.Error(w, "internal server error: chunk (see the server log)", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.writeBudget(art.Size)))
	hdr := w.Header()
	hdr.Set("Content-Type", "application/zstd")
	hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
	hdr.Set("ETag", quoteETag(art.ETag))
	serveFile(w, r, art.Name, art.ModTime, f, art.Size) // wholefile.go
}

// MaxProgressBytes bounds a progress body.
const MaxProgressBytes = 4 << 10

// serveProgress answers POST /progress/{mac}[?assetkey=K] from wwclient in
// stage 2: the bytes of the image unpacked so far, shown as "IMAGE 41% 420M/1.0G" by
// `wwserver status`. Same guard as the heartbeat (secure.go). 204.
func (h *Handler) serveProgress(w http.ResponseWriter, r *http.Request) {
	var p nodeapi.ProgressMessage
	c, ok := h.nodePost(w, r, status.StageImage, "progress", MaxProgressBytes, true, &p, func() error {
		switch {
		case p.Done < 0 || p.Total < 0 || p.Done > p.Total:
			return errors.New("want 0 <= done <= total")
		case p.Error != "" && p.Error != ReasonNoMemory && p.Error != ReasonImageFailed:
			return errors.New("error must be " + strconv.Quote(ReasonNoMemory) + " or " + strconv.Quote(ReasonImageFailed))
		}
		return nil
	})
	if !ok {
		return
	}
	sent := sentImageIndex
	if p.Error != "" {
		sent = p.Error
		msg := strings.Map(func(r rune) rune { // one log line
			if r < ' ' || r == 0x7f {
				return ' '
			}
			return r
		}, p.Message)
		if len(msg) > 512 {
			msg = msg[:512]
		}
		h.logs.Log("image-failed|"+p.Error, slog.LevelWarn, "node could not load its image", "node", c.node.Name,
			"mac", c.mac, "reason", p.Error, "msg", strings.TrimSpace(msg))
	}
	h.status.Record(status.Event{MAC: c.mac, Node: c.node.Name, IP: c.ip, Stage: status.StageImage, Sent: sent,
		Progress: &status.Progress{Done: p.Done, Total: p.Total}})
	w.WriteHeader(http.StatusNoContent)
}
