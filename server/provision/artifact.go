package provision

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/wwcluster/ww/server/config"
)

// getArtifact is one of the Builder methods.
type getArtifact func(ctx context.Context, snap *config.Snapshot, n *config.Node) (*Artifact, error)

// baseWriteTimeout is the write deadline of a file stage before adding the
// time its size takes at the minimum throughput.
const baseWriteTimeout = 2 * time.Minute

// serveArtifact is the shared body of the file stages: look the node up,
// apply guard (nil for unguarded stages), get the artifact from the builder
// and serve it with http.ServeContent (Content-Length, Range, ETag and
// If-None-Match, HEAD; at most maxRanges disjoint ranges, see
// serveContent), streaming from Open; never a whole file in memory.
func (h *Handler) serveArtifact(w http.ResponseWriter, r *http.Request, stage, label string, get getArtifact, guard func(*call) bool) {
	c, ok := h.begin(w, r, stage)
	if !ok {
		return
	}
	if c.node == nil {
		c.unknownNode()
		return
	}
	if guard != nil && !guard(c) {
		return
	}
	rc := http.NewResponseController(w)
	// A GET has no body to read, but net/http's background read of the
	// connection keeps the server's ReadTimeout, and its expiry cancels the
	// request context: that would abort builds longer than ReadTimeout.
	_ = rc.SetReadDeadline(time.Time{})

	start := time.Now()
	art, err := get(r.Context(), c.snap, c.node)
	h.metrics.wait.WithLabelValues(label).Observe(time.Since(start).Seconds())
	if err != nil {
		if r.Context().Err() != nil && errors.Is(err, r.Context().Err()) {
			h.log.Debug("client went away during build", "stage", stage, "mac", c.mac, "err", err)
			return
		}
		h.fail(c, "build", err)
		return
	}
	f, err := art.Open()
	if err != nil {
		h.fail(c, "open", err)
		return
	}
	defer f.Close()

	// Big images take a while at the slowest link we accept.
	_ = rc.SetWriteDeadline(time.Now().Add(h.writeBudget(art.Size)))
	hdr := w.Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Cache-Control", "no-cache")
	if art.ETag != "" {
		hdr.Set("ETag", quoteETag(art.ETag))
	}
	// Recorded as the header goes out (before the client can see a byte):
	// 200, 206 and 304 all count as sent.
	rw := &countingWriter{ResponseWriter: w, onHeader: func(code int) {
		if code < 400 {
			c.record(art.Name)
		}
	}}
	h.serveContent(rw, r, art.Name, art.ModTime, f, art.Size)
}

func (h *Handler) writeBudget(size int64) time.Duration {
	if size < 0 {
		size = 0
	}
	return baseWriteTimeout + time.Duration(size/h.minRate)*time.Second
}

// quoteETag makes an ETag header value out of a bare or quoted tag.
func quoteETag(tag string) string {
	if strings.HasPrefix(tag, `"`) || strings.HasPrefix(tag, `W/"`) {
		return tag
	}
	return `"` + tag + `"`
}
