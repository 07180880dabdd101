package provision

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
	"github.com/wwcluster/ww/server/status"
)

const macN004 = "52:54:00:00:00:04"

// twoStageFake adds the two-stage methods to fakeBuilder.
type twoStageFake struct {
	*fakeBuilder
	index  []byte
	chunks map[string][]byte
}

func (f *twoStageFake) ImageIndex(ctx context.Context, _ *config.Snapshot, n *config.Node) (*ImageIndex, error) {
	f.mu.Lock()
	f.calls["index"]++
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &ImageIndex{Digest: chunkimage.Digest(f.index), Data: f.index, ModTime: time.Unix(1700000000, 0)}, nil
}

func (f *twoStageFake) KernelModules(ctx context.Context, _ *config.Snapshot, n *config.Node) (*Artifact, error) {
	return f.get(ctx, "modules", "__MODULES__.img.gz", n)
}

func (f *twoStageFake) Chunk(digest string) (*Artifact, error) {
	data, ok := f.chunks[digest]
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w", digest, ErrNotFound)
	}
	return &Artifact{Name: digest, ETag: `"` + digest + `"`, Size: int64(len(data)), ModTime: time.Unix(1700000000, 0),
		Open: func() (io.ReadSeekCloser, error) { return nopCloser{bytes.NewReader(data)}, nil }}, nil
}

// newTwoStageEnv is newEnv with a two-stage builder and node n004
// (boot = "twostage").
func newTwoStageEnv(t *testing.T, secure bool) (*env, *twoStageFake) {
	t.Helper()
	e := &env{t: t, cfg: newFakeConfig(t, secure, ""), builder: newFakeBuilder(), status: &fakeStatus{},
		reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	nodes, err := config.ParseNodes("nodes.toml", []byte(testNodes+`
[nodes.n004]
profiles = ["default"]
boot = "twostage"
[nodes.n004.network.eth0]
hwaddr = "52:54:00:00:00:04"
ipaddr = "127.0.0.1"
`))
	if err != nil {
		t.Fatal(err)
	}
	snap := *e.cfg.snap.Load()
	snap.Nodes = nodes
	e.cfg.snap.Store(&snap)
	chunk := []byte("a compressed chunk, as far as the server cares")
	ix := &chunkimage.Index{Version: chunkimage.Version, Format: chunkimage.Format, Compression: chunkimage.Compression,
		Size: 100, Chunks: []chunkimage.Chunk{{SHA256: chunkimage.Digest(chunk), Size: int64(len(chunk)), USize: 100}}}
	data, _, err := ix.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tb := &twoStageFake{fakeBuilder: e.builder, index: data, chunks: map[string][]byte{chunkimage.Digest(chunk): chunk}}
	h, err := New(Options{Config: e.cfg, Builder: tb, Status: e.status, Registry: e.reg, Log: newTestLogger(e.logs)})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e, tb
}

func TestTwoStageIPXEScript(t *testing.T) {
	e, tb := newTwoStageEnv(t, false)
	resp, body := e.get("/ipxe/" + macN004)
	wantCode(t, resp, body, http.StatusOK)
	golden(t, "ipxe_twostage", body)
	s := string(body)
	digest := chunkimage.Digest(tb.index)
	for _, want := range []string{"initrd --name modules.img.gz " + e.cfg.snap.Load().Server.URL() + "/modules/" + macN004,
		"wwimage=" + digest, "initrd=modules.img.gz initrd=system.img.gz initrd=runtime.img.gz"} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	if strings.Contains(s, "image.img.gz") || strings.Contains(s, "/image/") {
		t.Error("two-stage script downloads the image")
	}
	// A single-stage node of the same server is unchanged.
	_, body = e.get("/ipxe/" + macN002)
	if strings.Contains(string(body), "wwimage=") || !strings.Contains(string(body), "image.img.gz") {
		t.Errorf("single-stage script changed:\n%s", body)
	}
	// The modules are a KERNEL stage file.
	resp, body = e.get("/modules/" + macN004)
	wantCode(t, resp, body, http.StatusOK)
	if ev := e.status.last(t); ev.Stage != status.StageKernel || ev.Sent != "__MODULES__.img.gz" {
		t.Errorf("modules recorded as %+v", ev)
	}
	// A build failure of the index fails the script (not a script without wwimage=).
	tb.set(func(f *fakeBuilder) { f.err = fmt.Errorf("image %q: %w", "x", ErrNotFound) })
	resp, body = e.get("/ipxe/" + macN004)
	wantCode(t, resp, body, http.StatusNotFound)
}

func TestImageIndexRoute(t *testing.T) {
	e, tb := newTwoStageEnv(t, true)
	resp, body := e.get("/index/" + macN004)
	wantCode(t, resp, body, http.StatusOK)
	if !bytes.Equal(body, tb.index) {
		t.Fatalf("index body %q", body)
	}
	digest := chunkimage.Digest(tb.index)
	if et := resp.Header.Get("ETag"); et != `"`+digest+`"` {
		t.Errorf("ETag %q", et)
	}
	if ev := e.status.last(t); ev.Stage != status.StageImage || ev.Sent != "__IMAGE__.index" || ev.Node != "n004" {
		t.Errorf("recorded %+v", ev)
	}
	resp, body = e.get("/index/"+macN004, "If-None-Match", `"`+digest+`"`)
	wantCode(t, resp, body, http.StatusNotModified)
	resp, body = e.get("/index/" + macNone)
	wantCode(t, resp, body, http.StatusNotFound)
}

func TestChunkRoute(t *testing.T) {
	e, tb := newTwoStageEnv(t, true)
	var digest string
	var chunk []byte
	for d, c := range tb.chunks {
		digest, chunk = d, c
	}
	resp, body := e.get("/chunk/" + digest)
	wantCode(t, resp, body, http.StatusOK)
	if !bytes.Equal(body, chunk) || resp.Header.Get("ETag") != `"`+digest+`"` ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("chunk: %q, headers %v", body, resp.Header)
	}
	resp, body = e.get("/chunk/"+digest, "Range", "bytes=10-")
	wantCode(t, resp, body, http.StatusPartialContent)
	if !bytes.Equal(body, chunk[10:]) {
		t.Fatalf("range: %q", body)
	}
	resp, body = e.get("/chunk/" + strings.Repeat("ab", 32))
	wantCode(t, resp, body, http.StatusNotFound)
	if !strings.Contains(string(body), "not in this server's chunk store") {
		t.Errorf("404 without a reason: %q", body)
	}
	for _, bad := range []string{"ABCD", strings.Repeat("A", 64), "..%2f..%2fetc%2fpasswd"} {
		resp, body = e.get("/chunk/" + bad)
		wantCode(t, resp, body, http.StatusBadRequest)
	}
	if n := len(e.status.all()); n != 0 {
		t.Errorf("chunks recorded %d status events", n)
	}
	// A builder without the two-stage methods: 404.
	plain := newEnv(t, false)
	resp, body = plain.get("/chunk/" + digest)
	wantCode(t, resp, body, http.StatusNotFound)
}

func TestProgressRoute(t *testing.T) {
	e, _ := newTwoStageEnv(t, false)
	post := func(mac, body string) (*http.Response, []byte) {
		return e.do(http.MethodPost, "/progress/"+mac, strings.NewReader(body))
	}
	resp, body := post(macN004, `{"done":41,"total":100}`)
	wantCode(t, resp, body, http.StatusNoContent)
	ev := e.status.last(t)
	if ev.Stage != status.StageImage || ev.Sent != "__IMAGE__.index" || ev.Progress == nil || *ev.Progress != (status.Progress{Done: 41, Total: 100}) {
		t.Fatalf("recorded %+v (progress %+v)", ev, ev.Progress)
	}
	resp, body = post(macN004, `{"done":0,"total":100,"error":"NO_MEMORY","message":"image needs 5 GiB, 3 GiB free"}`)
	wantCode(t, resp, body, http.StatusNoContent)
	if ev := e.status.last(t); ev.Sent != ReasonNoMemory {
		t.Errorf("refusal recorded as %+v", ev)
	}
	for _, bad := range []string{`{"done":101,"total":100}`, `{"done":-1,"total":1}`, `{"done":1,"total":2,"error":"OTHER"}`,
		`{"done":1,"total":2,"x":1}`, `{"done":1,"total":2}{}`, `nope`, `{"done":1,"total":2,"message":"` + strings.Repeat("x", 5000) + `"}`} {
		resp, body = post(macN004, bad)
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%.40s: status %d %s", bad, resp.StatusCode, body)
		}
	}
	resp, body = post(macNone, `{"done":1,"total":2}`)
	wantCode(t, resp, body, http.StatusNotFound)

	// Secure mode: the heartbeat's guard (a privileged source port).
	s, _ := newTwoStageEnv(t, true)
	resp, body = s.do(http.MethodPost, "/progress/"+macN004, strings.NewReader(`{"done":1,"total":2}`))
	wantCode(t, resp, body, http.StatusForbidden)
	if evs := s.status.all(); len(evs) != 0 {
		t.Errorf("a refused progress post changed status: %+v", evs) // refusals leave status (request.go)
	}
}
