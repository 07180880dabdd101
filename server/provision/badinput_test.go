package provision

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestBadInputGetsClearError (issue 20): every bad request to the routes
// this issue touched gets a 4xx whose body says what was wrong (plain
// text, never empty, never a stack or an internal detail).
func TestBadInputGetsClearError(t *testing.T) {
	many := "bytes=" + strings.TrimSuffix(strings.Repeat("0-0,", 40), ",")
	huge := `{"pad":"` + strings.Repeat("x", MaxHeartbeatBytes) + `"}`
	for _, c := range []struct {
		secure             bool
		method, path, body string
		hdr                []string
		code               int
		reason             string
	}{
		{false, "POST", "/heartbeat/not-a-mac", "{}", nil, 400, "bad MAC address in the URL"},
		{false, "POST", "/heartbeat/ff:ff:ff:ff:ff:ff", "{}", nil, 400, "is the broadcast address, not a network card's"},
		{false, "GET", "/ipxe/01:00:5e:00:00:01", "", nil, 400, "is a multicast address"},
		{false, "GET", "/kernel/00-00-00-00-00-00", "", nil, 400, "is all zeros"},
		{false, "POST", "/heartbeat/" + macN002, "garbage", nil, 400, "bad heartbeat JSON"},
		{false, "POST", "/heartbeat/" + macN002, `{"node":"n002"} {}`, nil, 400, "trailing data after the JSON object"},
		{false, "POST", "/heartbeat/" + macN002, huge, nil, 413, "heartbeat body larger than 64 KiB"},
		{false, "POST", "/heartbeat/" + macNone, "{}", nil, 404, "no node has MAC " + macNone},
		{false, "GET", "/overlay/runtime/" + macN001, "", nil, 401, "this node requires ?assetkey="},
		{false, "GET", "/overlay/runtime/" + macN001 + "?assetkey=no", "", nil, 403, "wrong asset key"},
		{false, "GET", "/overlay/runtime/" + macN001 + "?assetkey=%zz", "", nil, 400, "bad query"},
		{true, "GET", "/overlay/runtime/" + macN002, "", nil, 403, "served only to privileged source ports"},
		{true, "POST", "/heartbeat/" + macN002, "{}", nil, 403, "served only to privileged source ports"},
		{false, "GET", "/provision/" + macN002, "", nil, 400, "missing ?stage="},
		{false, "GET", "/provision/" + macN002 + "?stage=bogus", "", nil, 400, `unknown stage "bogus"`},
		{false, "GET", "/image/" + macN002, "", []string{"Range", many}, 416, "more than 16 ranges"},
		{false, "GET", "/kernel/" + macN002, "", []string{"Range", "bytes=0-9,5-20"}, 416, "ranges 0-9 and 5-20 overlap"},
		{false, "GET", "/image/" + macN002, "", []string{"Range", "bytes=9-1"}, 416, "invalid range"},
	} {
		name := fmt.Sprintf("%s %s (secure=%v)", c.method, c.path, c.secure)
		if len(name) > 120 {
			name = name[:120]
		}
		e := newEnv(t, c.secure)
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		resp, data := e.do(c.method, c.path, body, c.hdr...)
		if resp.StatusCode != c.code {
			t.Errorf("%s: %d, want %d; body %q", name, resp.StatusCode, c.code, data)
			continue
		}
		if !strings.Contains(string(data), c.reason) {
			t.Errorf("%s: body %q lacks the reason %q", name, data, c.reason)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("%s: Content-Type %q", name, ct)
		}
		if strings.Contains(string(data), "goroutine") || strings.Contains(string(data), ".go:") {
			t.Errorf("%s: body leaks internals: %q", name, data)
		}
	}
}
