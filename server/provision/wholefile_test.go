package provision

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestServeFileSameAsServeContent: serveFile (whole-file answers without
// ServeContent, header with MSG_MORE, sendfile) answers every request exactly as
// http.ServeContent does: status, header fields (but Date) and body, for
// plain GETs and HEADs, ranges, preconditions, over a real loopback TCP
// connection through the connection limiter (the production path).
func TestServeFileSameAsServeContent(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640,000 bytes: several sendfile segments
	path := filepath.Join(t.TempDir(), "chunk")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	modtime := time.Unix(1700000000, 0)
	serve := func(fast bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			f, err := os.Open(path)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			w.Header().Set("Content-Type", "application/zstd")
			w.Header().Set("ETag", `"abc"`)
			cw := &countingWriter{ResponseWriter: w}
			if fast {
				serveFile(cw, r, "chunk", modtime, f, int64(len(body)))
			} else {
				http.ServeContent(cw, r, "chunk", modtime, f)
			}
		}
	}
	fastURL, slowURL := startLimited(t, serve(true)), startLimited(t, serve(false))

	lastMod := modtime.UTC().Format(http.TimeFormat)
	cases := []struct {
		name, method string
		header       map[string]string
	}{
		{"get", http.MethodGet, nil},
		{"head", http.MethodHead, nil},
		{"range", http.MethodGet, map[string]string{"Range": "bytes=100-199"}},
		{"suffix range", http.MethodGet, map[string]string{"Range": "bytes=-10"}},
		{"range past end", http.MethodGet, map[string]string{"Range": "bytes=900000-"}},
		{"if-none-match", http.MethodGet, map[string]string{"If-None-Match": `"abc"`}},
		{"if-none-match other", http.MethodGet, map[string]string{"If-None-Match": `"xyz"`}},
		{"if-modified-since", http.MethodGet, map[string]string{"If-Modified-Since": lastMod}},
		{"if-match other", http.MethodGet, map[string]string{"If-Match": `"xyz"`}},
		{"post", http.MethodPost, nil},
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			get := func(url string) (*http.Response, []byte) {
				req, err := http.NewRequest(tc.method, url, nil)
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range tc.header {
					req.Header.Set(k, v)
				}
				resp, b := do(t, client, req) // refusal_test.go
				resp.Header.Del("Date")
				return resp, b
			}
			want, wantBody := get(slowURL)
			got, gotBody := get(fastURL)
			if got.StatusCode != want.StatusCode {
				t.Errorf("status %d, ServeContent %d", got.StatusCode, want.StatusCode)
			}
			if !sameHeader(got.Header, want.Header) {
				t.Errorf("header\n%v\nServeContent's\n%v", got.Header, want.Header)
			}
			if !bytes.Equal(gotBody, wantBody) {
				t.Errorf("body: %d bytes, ServeContent %d", len(gotBody), len(wantBody))
			}
			if tc.name == "get" && !bytes.Equal(gotBody, body) {
				t.Errorf("GET body: %d bytes, want the file's %d", len(gotBody), len(body))
			}
		})
	}
}

func sameHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// startLimited serves h on a loopback port through NewConnLimiter and
// NewHTTPServer, as wwserver does; the base URL.
func startLimited(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim, err := NewConnLimiter(ln, ConnLimits{Max: 16}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewHTTPServer(h, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lim)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String() + "/f"
}

// TestTrackedOfThroughLimiter: a handler behind wwserver's listener finds
// its connection (so serveWhole sends the header with MSG_MORE).
func TestTrackedOfThroughLimiter(t *testing.T) {
	found := make(chan bool, 1)
	url := startLimited(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		found <- trackedOf(r) != nil
	}))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !<-found {
		t.Error("trackedOf: no limiter connection in the request context")
	}
}
