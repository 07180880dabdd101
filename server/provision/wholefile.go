package provision

import (
	"io"
	"net/http"
	"strconv"
	"time"
)

// Serving a whole file without http.ServeContent (issue 16: CPU per chunk
// request of the boot storm). For a request with no Range and no
// conditional header ServeContent's answer is always the same 200, but it
// costs two lseek(2) calls to learn a size the caller knows, and net/http
// then read(2)s the first 512 bytes of the file to send them with the
// header before handing the rest to sendfile(2). serveWhole writes the same
// header fields (Last-Modified, Accept-Ranges, Content-Length), sends the
// header at once and the whole body with sendfile(2).

// plainGet reports whether ServeContent would answer r with the whole
// content and 200: a GET or HEAD without Range or precondition headers.
// (If-Range only matters with a Range.) r.Header keys are canonical.
func plainGet(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	h := r.Header
	return h["Range"] == nil && h["If-Match"] == nil && h["If-None-Match"] == nil &&
		h["If-Modified-Since"] == nil && h["If-Unmodified-Since"] == nil
}

// serveFile is http.ServeContent, with serveWhole for a plainGet request
// when the caller has set Content-Type (else ServeContent would sniff it).
func serveFile(w http.ResponseWriter, r *http.Request, name string, modtime time.Time, content io.ReadSeeker, size int64) {
	if plainGet(r) && w.Header()["Content-Type"] != nil {
		serveWhole(w, r, modtime, content, size)
		return
	}
	http.ServeContent(w, r, name, modtime, content)
}

var (
	headerAcceptRangesBytes = []string{"bytes"}
	unixEpoch               = time.Unix(0, 0)
)

// serveWhole answers a plainGet request with content's first size bytes,
// as http.ServeContent would (the caller has set Content-Type).
func serveWhole(w http.ResponseWriter, r *http.Request, modtime time.Time, content io.Reader, size int64) {
	hdr := w.Header()
	if !modtime.IsZero() && !modtime.Equal(unixEpoch) {
		hdr["Last-Modified"] = []string{modtime.UTC().Format(http.TimeFormat)}
	}
	hdr["Accept-Ranges"] = headerAcceptRangesBytes
	if v := hdr["Content-Encoding"]; len(v) == 0 || v[0] == "" {
		hdr["Content-Length"] = []string{strconv.FormatInt(size, 10)}
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead || size == 0 {
		return
	}
	// The header is written now: then net/http's ReadFrom hands the whole
	// body to sendfile(2) instead of first copying 512 bytes (its
	// Content-Type sniffing) through a buffer. The header is written with
	// MSG_MORE, so that it does not leave as a segment of its own.
	tc := trackedOf(r)
	if tc != nil {
		tc.holdNextWrite(true)
	}
	_ = http.NewResponseController(w).Flush()
	if tc != nil {
		tc.holdNextWrite(false)
	}
	_, _ = io.CopyN(w, content, size)
}
