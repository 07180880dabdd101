package provision

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxRanges is the most byte ranges one request may ask for.
const maxRanges = 16

// reasonBadRange counts requests refused for their Range header.
const reasonBadRange = "BAD_RANGE"

// serveContent is http.ServeContent with the Range header checked first.
// net/http answers any number of ranges, overlapping or not, with a
// multipart body: 2,000 one-byte ranges in a 4 KB request made a 288 KB
// answer, and "bytes=0-,0-,0-…" repeats the whole file per range.
//
// A request with more than maxRanges ranges, or with two that overlap, is
// answered 416 with the reason (and Content-Range: bytes */SIZE) instead of
// being served. RFC 9110 §14.2 lets a server reject exactly these ("more
// than two overlapping ranges or … many small ranges", signs of a broken
// client or a denial-of-service attempt). The alternatives were worse
// here: ignoring the Range header and serving the whole file (what nginx's
// max_ranges and Apache's MaxRanges do) turns a 4 KB request into a whole
// image, hundreds of megabytes; serving only the first range answers a
// multipart request with something it did not ask for. No boot client
// (iPXE, wwclient, curl resuming a download) sends more than one range, so
// a clear refusal costs nothing legitimate. Syntax errors and ranges past
// the end are left to net/http, which answers them 416 itself.
func (h *Handler) serveContent(w http.ResponseWriter, r *http.Request, name string, modtime time.Time, content io.ReadSeeker, size int64) {
	if reason := rangeProblem(r.Header.Get("Range"), size); reason != "" {
		h.metrics.refusals.WithLabelValues(reasonBadRange).Inc()
		w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		http.Error(w, "Range not served: "+reason, http.StatusRequestedRangeNotSatisfiable)
		return
	}
	serveFile(w, r, name, modtime, content, size) // wholefile.go
}

// rangeProblem returns why a Range header is refused, or "" when
// http.ServeContent may handle it (including when it is malformed: net/http
// then refuses it).
func rangeProblem(header string, size int64) string {
	spec, ok := strings.CutPrefix(header, "bytes=")
	if !ok || !strings.Contains(spec, ",") {
		return "" // not a byte range, or a single one
	}
	type span struct{ start, end int64 } // inclusive
	var spans []span
	n := 0
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if n++; n > maxRanges {
			return fmt.Sprintf("more than %d ranges in one request", maxRanges)
		}
		first, last, ok := strings.Cut(part, "-")
		if !ok {
			return ""
		}
		first, last = strings.TrimSpace(first), strings.TrimSpace(last)
		var s span
		if first == "" { // suffix: the last N bytes
			k, err := strconv.ParseInt(last, 10, 64)
			if err != nil || k < 0 {
				return ""
			}
			if k == 0 || size == 0 {
				continue // selects nothing
			}
			s = span{max(size-k, 0), size - 1}
		} else {
			i, err := strconv.ParseInt(first, 10, 64)
			if err != nil || i < 0 {
				return ""
			}
			s = span{i, size - 1}
			if last != "" {
				j, err := strconv.ParseInt(last, 10, 64)
				if err != nil || j < i {
					return ""
				}
				s.end = min(j, size-1)
			}
			if i >= size {
				continue // past the end: net/http skips it
			}
		}
		spans = append(spans, s)
	}
	slices.SortFunc(spans, func(a, b span) int {
		switch {
		case a.start < b.start:
			return -1
		case a.start > b.start:
			return 1
		}
		return 0
	})
	for i := 1; i < len(spans); i++ {
		if spans[i].start <= spans[i-1].end {
			return fmt.Sprintf("ranges %d-%d and %d-%d overlap", spans[i-1].start, spans[i-1].end, spans[i].start, spans[i].end)
		}
	}
	return ""
}
