package provision

import (
	"fmt"
	"mime"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestRangeLimits (issue 20, Low 12): a Range header with more than
// maxRanges ranges, or with overlapping ones, is answered 416 with the
// reason and a small body instead of a multipart answer larger than the
// file; a few disjoint ranges, one range and a suffix are still served.
func TestRangeLimits(t *testing.T) {
	e := newEnv(t, false)
	path := "/image/" + macN002
	_, whole := e.get(path)
	size := len(whole)
	if size < 1000 {
		t.Fatalf("image of %d bytes", size)
	}
	many := make([]string, 2000)
	for i := range many {
		many[i] = fmt.Sprintf("%d-%d", 2*i, 2*i)
	}
	seq := make([]string, maxRanges)
	for i := range seq {
		seq[i] = fmt.Sprintf("%d-%d", 10*i, 10*i+4)
	}
	for _, c := range []struct {
		name, rng string
		want      string // in the 416 body
	}{
		{"2000 ranges", "bytes=" + strings.Join(many, ","), "more than 16 ranges"},
		{"17 ranges", "bytes=" + strings.Join(seq, ",") + ",900-901", "more than 16 ranges"},
		{"the whole file twice", "bytes=0-,0-", "overlap"},
		{"overlap, unsorted", "bytes=500-600, 0-10, 550-560", "ranges 500-600 and 550-560 overlap"},
		{"suffix over a range", fmt.Sprintf("bytes=%d-%d,-10", size-20, size-5), "overlap"},
	} {
		resp, body := e.get(path, "Range", c.rng)
		wantCode(t, resp, body, http.StatusRequestedRangeNotSatisfiable)
		if !strings.Contains(string(body), c.want) || len(body) > 200 {
			t.Errorf("%s: body %q, want a short reason with %q", c.name, body, c.want)
		}
		if got := resp.Header.Get("Content-Range"); got != "bytes */"+strconv.Itoa(size) {
			t.Errorf("%s: Content-Range %q", c.name, got)
		}
	}
	if v := counterValue(t, e.reg, "wwserver_http_refusals_total", "reason", reasonBadRange); v != 5 {
		t.Errorf("BAD_RANGE refusals counted %v, want 5", v)
	}

	// Served: maxRanges disjoint ranges (multipart, each part right), one
	// range, a suffix, adjacent ranges, ranges partly past the end.
	resp, body := e.get(path, "Range", "bytes="+strings.Join(seq, ","))
	wantCode(t, resp, body, http.StatusPartialContent)
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("Content-Type %q: %v", resp.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(strings.NewReader(string(body)), params["boundary"])
	parts := 0
	for ; ; parts++ {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		buf := make([]byte, 16)
		n, _ := p.Read(buf)
		if want := string(whole[10*parts : 10*parts+5]); string(buf[:n]) != want {
			t.Errorf("part %d: %q, want %q", parts, buf[:n], want)
		}
	}
	if parts != maxRanges {
		t.Errorf("%d parts, want %d", parts, maxRanges)
	}
	for _, c := range []struct{ rng, want string }{
		{"bytes=5-9", string(whole[5:10])},
		{"bytes=-3", string(whole[size-3:])},
		{"bytes=0-4,5-9", ""},                      // adjacent: not overlapping
		{fmt.Sprintf("bytes=0-1,%d-", size+5), ""}, // one past the end: skipped
		{fmt.Sprintf("bytes=0-1, %d-%d", size-2, size+100), ""},
	} {
		resp, body := e.get(path, "Range", c.rng)
		wantCode(t, resp, body, http.StatusPartialContent)
		if c.want != "" && string(body) != c.want {
			t.Errorf("%s: %q, want %q", c.rng, body, c.want)
		}
	}
	// Malformed or unsatisfiable: net/http's own 416.
	for _, rng := range []string{"bytes=x-y", fmt.Sprintf("bytes=%d-", size+1), "bytes=5-1,7-8"} {
		resp, body := e.get(path, "Range", rng)
		wantCode(t, resp, body, http.StatusRequestedRangeNotSatisfiable)
	}
	// The limit applies to every file stage and to /ipxe-bin.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ipxe.efi"), strings.Repeat("x", 4096))
	e.cfg.snap.Store(newFakeConfig(t, false, fmt.Sprintf("[tftp]\ndir = %q\n", dir)).snap.Load())
	for _, p := range []string{"/kernel/" + macN002, "/overlay/system/" + macN002, "/overlay/runtime/" + macN002, "/ipxe-bin/ipxe.efi"} {
		resp, body := e.get(p, "Range", "bytes="+strings.Join(many, ","))
		wantCode(t, resp, body, http.StatusRequestedRangeNotSatisfiable)
	}
}

func TestRangeProblem(t *testing.T) {
	for _, c := range []struct {
		h    string
		size int64
		bad  bool
	}{
		{"", 100, false},
		{"bytes=0-10", 100, false},
		{"items=0-1,0-1", 100, false}, // not bytes: net/http ignores it
		{"bytes=0-10,20-30", 100, false},
		{"bytes=0-10,10-20", 100, true},
		{"bytes=-50,60-65", 100, true},
		{"bytes=-50,5-6", 10, true},
		{"bytes=-50,40-45", 100, false},
		{"bytes=200-300,200-300", 100, false}, // both past the end: net/http's 416
		{"bytes=0-0,,,,1-1", 100, false},
		{"bytes=" + strings.Repeat("0-0,", 17), 100, true},
		{"bytes=0-0,junk", 100, false}, // malformed: net/http's 416
		{"bytes=-0,-0", 100, false},
	} {
		if got := rangeProblem(c.h, c.size) != ""; got != c.bad {
			t.Errorf("rangeProblem(%q, %d) = %q, want refused=%v", c.h, c.size, rangeProblem(c.h, c.size), c.bad)
		}
	}
}
