package provision

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/status"
)

// fileRoutes are the file stages: path prefix, /provision stage, status stage, name sent.
var fileRoutes = []struct {
	prefix, stage, status, sent string
}{
	{"/kernel/", "kernel", status.StageKernel, "vmlinuz-6.1.0-1-amd64"},
	{"/image/", "image", status.StageImage, "__IMAGE__.img.gz"},
	{"/overlay/system/", "system", status.StageSystemOverlay, "__SYSTEM__.img.gz"},
	{"/overlay/runtime/", "runtime", status.StageRuntimeOverlay, "__RUNTIME__.img.gz"},
}

func TestFileStages(t *testing.T) {
	e := newEnv(t, false) // insecure: the runtime overlay of n002 is open
	for _, r := range fileRoutes {
		t.Run(r.stage, func(t *testing.T) {
			want := r.stage + "/n002:" + string(e.builder.content[r.stage])
			for _, path := range []string{r.prefix + "52-54-00-00-00-02", "/provision/52:54:00:00:00:02?stage=" + r.stage} {
				resp, body := e.get(path)
				wantCode(t, resp, body, http.StatusOK)
				if string(body) != want {
					t.Errorf("%s: body %q, want %q", path, body, want)
				}
				if resp.Header.Get("Content-Length") != strconv.Itoa(len(want)) {
					t.Errorf("%s: Content-Length %q", path, resp.Header.Get("Content-Length"))
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
					t.Errorf("%s: Content-Type %q", path, ct)
				}
				if et := resp.Header.Get("ETag"); et != fmt.Sprintf(`"%s-n002-%d"`, r.stage, len(want)) {
					t.Errorf("%s: ETag %q", path, et)
				}
				if resp.Header.Get("Accept-Ranges") != "bytes" {
					t.Errorf("%s: no Accept-Ranges", path)
				}
				ev := e.status.last(t)
				if ev.Stage != r.status || ev.Sent != r.sent || ev.Node != "n002" || ev.MAC != macN002 || ev.IP != "127.0.0.1" {
					t.Errorf("%s: event %+v", path, ev)
				}
			}

			// Range: 206 with the right bytes.
			resp, body := e.get(r.prefix+macN002, "Range", "bytes=3-9")
			wantCode(t, resp, body, http.StatusPartialContent)
			if string(body) != want[3:10] {
				t.Errorf("range body %q, want %q", body, want[3:10])
			}
			if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes 3-9/%d", len(want)) {
				t.Errorf("Content-Range %q", cr)
			}
			resp, body = e.get(r.prefix+macN002, "Range", "bytes=-4")
			wantCode(t, resp, body, http.StatusPartialContent)
			if string(body) != want[len(want)-4:] {
				t.Errorf("suffix range body %q", body)
			}
			resp, body = e.get(r.prefix+macN002, "Range", "bytes=100000-")
			wantCode(t, resp, body, http.StatusRequestedRangeNotSatisfiable)

			// If-None-Match: 304, no body, still recorded as sent.
			n := len(e.status.all())
			etag := fmt.Sprintf(`"%s-n002-%d"`, r.stage, len(want))
			resp, body = e.get(r.prefix+macN002, "If-None-Match", etag)
			wantCode(t, resp, body, http.StatusNotModified)
			if len(body) != 0 {
				t.Errorf("304 with a body")
			}
			if evs := e.status.all(); len(evs) <= n || evs[len(evs)-1].Sent != r.sent {
				t.Errorf("304 not recorded as sent: %+v", evs[len(evs)-1])
			}
			resp, body = e.get(r.prefix+macN002, "If-None-Match", `"other"`)
			wantCode(t, resp, body, http.StatusOK)

			// HEAD: headers, no body, not recorded.
			n = len(e.status.all())
			resp, body = e.do(http.MethodHead, r.prefix+macN002, nil)
			wantCode(t, resp, body, http.StatusOK)
			if len(body) != 0 || resp.ContentLength != int64(len(want)) {
				t.Errorf("HEAD: body %d bytes, Content-Length %d", len(body), resp.ContentLength)
			}
			if len(e.status.all()) != n {
				t.Error("HEAD recorded as sent")
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, false)
	for _, path := range []string{
		"/ipxe/nonsense", "/kernel/52:54:00:00:00", "/image/52:54:00:00:00:0g", "/overlay/system/5254.0000.0002",
		"/overlay/runtime/52:54:00:00:00:02:03", "/provision/xx?stage=kernel",
	} {
		resp, body := e.get(path)
		wantCode(t, resp, body, http.StatusBadRequest)
		if !strings.Contains(string(body), "MAC") {
			t.Errorf("%s: body does not say why: %q", path, body)
		}
	}
	resp, body := e.do(http.MethodPost, "/heartbeat/zz", strings.NewReader("{}"))
	wantCode(t, resp, body, http.StatusBadRequest)

	for _, path := range []string{
		"/provision/" + macN002, "/provision/" + macN002 + "?stage=", "/provision/" + macN002 + "?stage=initrd",
		"/provision/" + macN002 + "?stage=kernel&x=%zz",
	} {
		resp, body := e.get(path)
		wantCode(t, resp, body, http.StatusBadRequest)
	}
	if len(e.status.all()) != 0 {
		t.Errorf("bad requests were recorded: %+v", e.status.all())
	}
	// Wrong method.
	resp, body = e.do(http.MethodPost, "/kernel/"+macN002, nil)
	wantCode(t, resp, body, http.StatusMethodNotAllowed)
	resp, body = e.get("/heartbeat/" + macN002)
	wantCode(t, resp, body, http.StatusMethodNotAllowed)
	resp, body = e.get("/nothing/here")
	wantCode(t, resp, body, http.StatusNotFound)
}

func TestUnknownNodeFileStages(t *testing.T) {
	e := newEnv(t, true)
	for _, r := range fileRoutes {
		resp, body := e.get(r.prefix + "52:54:00:00:00:99")
		wantCode(t, resp, body, http.StatusNotFound)
		ev := e.status.last(t)
		if ev.Node != "" || ev.MAC != macNone || ev.Stage != r.status || ev.Sent != ReasonNotFound {
			t.Errorf("%s: event %+v", r.prefix, ev)
		}
	}
	if n := e.builder.callCount("kernel"); n != 0 {
		t.Errorf("builder called %d times for an unknown node", n)
	}
}

func TestBuilderErrors(t *testing.T) {
	e := newEnv(t, false)
	e.builder.set(func(f *fakeBuilder) { f.err = fmt.Errorf("image %q: no rootfs: %w", "debian", ErrNotFound) })
	resp, body := e.get("/image/" + macN002)
	wantCode(t, resp, body, http.StatusNotFound)
	if ev := e.status.last(t); ev.Sent != ReasonNotFound || ev.Node != "n002" || ev.Stage != status.StageImage {
		t.Errorf("event %+v", ev)
	}
	if strings.Contains(string(body), "rootfs") {
		t.Errorf("404 body leaks server detail: %q", body)
	}

	e.builder.set(func(f *fakeBuilder) { f.err = errBoom })
	resp, body = e.get("/overlay/system/" + macN002)
	wantCode(t, resp, body, http.StatusInternalServerError)
	if !strings.Contains(e.logs.String(), "boom") {
		t.Error("build error not logged")
	}
	if got := counterValue(t, e.reg, "wwserver_http_errors_total", "kind", "build"); got != 1 {
		t.Errorf("build errors counted %v", got)
	}
}

func TestRecoverMiddleware(t *testing.T) {
	e := newEnv(t, false)
	e.builder.set(func(f *fakeBuilder) { f.panic = true })
	resp, body := e.get("/kernel/" + macN002)
	wantCode(t, resp, body, http.StatusInternalServerError)
	if got := counterValue(t, e.reg, "wwserver_http_errors_total", "kind", "panic"); got != 1 {
		t.Errorf("panics counted %v", got)
	}
	if !strings.Contains(e.logs.String(), "fake builder panic") {
		t.Error("panic not logged")
	}
	// The server still serves.
	e.builder.set(func(f *fakeBuilder) { f.panic = false })
	resp, body = e.get("/kernel/" + macN002)
	wantCode(t, resp, body, http.StatusOK)
}

func TestReadTimeoutDoesNotCancelBuild(t *testing.T) {
	e := newEnv(t, false)
	// The build outlasts the read timeout by far; the timeout itself is long
	// enough that a loaded machine still reads the request before it
	// expires (at 50 ms the server sometimes closed the connection before
	// reading the request: "server closed idle connection").
	e.builder.set(func(f *fakeBuilder) { f.delay = 2 * time.Second })
	srv := httptest.NewUnstartedServer(e.h)
	srv.Config.ReadTimeout = 500 * time.Millisecond
	srv.Start()
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/image/" + macN002)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	e.builder.mu.Lock()
	defer e.builder.mu.Unlock()
	if e.builder.ctxErr != nil {
		t.Errorf("build context cancelled by the read timeout: %v", e.builder.ctxErr)
	}
}

func TestWriteBudget(t *testing.T) {
	h := &Handler{minRate: 1 << 20}
	if got := h.writeBudget(0); got != baseWriteTimeout {
		t.Errorf("budget(0) = %v", got)
	}
	if got := h.writeBudget(600 << 20); got != baseWriteTimeout+600*time.Second {
		t.Errorf("budget(600 MiB) = %v", got)
	}
	if quoteETag("abc") != `"abc"` || quoteETag(`"abc"`) != `"abc"` || quoteETag(`W/"x"`) != `W/"x"` {
		t.Error("quoteETag")
	}
}
