package stage2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
)

var (
	testImgOnce sync.Once
	testImg     *image
)

// sharedImage is a ~1.5 MiB stream in 64 KiB chunks, made once per process.
func sharedImage(t testing.TB) *image {
	testImgOnce.Do(func() { testImg = makeImage(t, bigArchive(t, 24, 64<<10), 64<<10) })
	return testImg
}

func TestFetchWhole(t *testing.T) {
	img := sharedImage(t)
	s := newImgServer(t, img)
	got, err := fetchAll(t, fetcher(t, img, s))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img.stream) {
		t.Fatal("stream differs")
	}
	for _, c := range img.ix.Chunks {
		if n := s.hits(c.SHA256); n != 1 {
			t.Errorf("chunk %s fetched %d times", c.SHA256[:8], n)
		}
	}
}

// TestFetchResumesWithRange: a connection dropped in the middle of a chunk
// is resumed at the byte it stopped at (Range), not from the chunk's start.
func TestFetchResumesWithRange(t *testing.T) {
	img := sharedImage(t)
	s := newImgServer(t, img)
	c := img.ix.Chunks[2]
	half := int(c.Size / 2)
	s.set(func(s *imgServer) { s.dropAfter[c.SHA256] = half })
	got, err := fetchAll(t, fetcher(t, img, s))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img.stream) {
		t.Fatal("stream differs")
	}
	want := fmt.Sprintf("GET /chunk/%s bytes=%d-", c.SHA256, half)
	found := false
	for _, r := range s.log() {
		found = found || r == want
	}
	if !found {
		t.Fatalf("no resume request %q in %q", want, s.log())
	}
}

// TestFetchIdleTimeout: a server that stops sending mid-chunk is given up
// after the idle timeout and the chunk resumed.
func TestFetchIdleTimeout(t *testing.T) {
	img := sharedImage(t)
	s := newImgServer(t, img)
	c := img.ix.Chunks[1]
	s.set(func(s *imgServer) { s.stallAt[c.SHA256] = 100 })
	f := fetcher(t, img, s)
	f.o.IdleTimeout = 200 * time.Millisecond
	got, err := fetchAll(t, f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img.stream) {
		t.Fatal("stream differs")
	}
	if s.hits(c.SHA256) < 2 {
		t.Fatal("stalled chunk not fetched again")
	}
}

// TestFetchIgnoredRange: a server answering a Range request with the whole
// chunk (200) is taken from the start.
func TestFetchIgnoredRange(t *testing.T) {
	img := sharedImage(t)
	s := newImgServer(t, img)
	c := img.ix.Chunks[0]
	s.set(func(s *imgServer) { s.dropAfter[c.SHA256] = 1000; s.noRange = true })
	got, err := fetchAll(t, fetcher(t, img, s))
	if err != nil || !bytes.Equal(got, img.stream) {
		t.Fatalf("err %v, equal %v", err, bytes.Equal(got, img.stream))
	}
}

// TestFetchCorruptChunkFromNextServer: a chunk with a flipped byte fails its
// sha256 and is fetched again from the next server.
func TestFetchCorruptChunkFromNextServer(t *testing.T) {
	img := sharedImage(t)
	a, b := newImgServer(t, img), newImgServer(t, img)
	c := img.ix.Chunks[3]
	a.set(func(s *imgServer) { s.corrupt[c.SHA256] = true })
	got, err := fetchAll(t, fetcher(t, img, a, b))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img.stream) {
		t.Fatal("stream differs")
	}
	if a.hits(c.SHA256) < 1 || b.hits(c.SHA256) < 1 {
		t.Fatalf("corrupt chunk: %d requests to a, %d to b", a.hits(c.SHA256), b.hits(c.SHA256))
	}
}

// TestFetchCorruptEverywhere: a chunk corrupt on every server is given up
// after the rounds, with the digest error.
func TestFetchCorruptEverywhere(t *testing.T) {
	img := sharedImage(t)
	a, b := newImgServer(t, img), newImgServer(t, img)
	c := img.ix.Chunks[3]
	for _, s := range []*imgServer{a, b} {
		s.set(func(s *imgServer) { s.corrupt[c.SHA256] = true })
	}
	f := fetcher(t, img, a, b)
	f.o.Rounds = 2
	_, err := fetchAll(t, f)
	if !errors.Is(err, chunkimage.ErrDigest) {
		t.Fatalf("err %v, want a digest error", err)
	}
	if n := a.hits(c.SHA256) + b.hits(c.SHA256); n != 4 {
		t.Errorf("%d attempts, want rounds × servers = 4", n)
	}
}

// TestFetchFailover: the first server is down (503), then gone (closed);
// the index and chunks come from the second, which is then kept.
func TestFetchFailover(t *testing.T) {
	img := sharedImage(t)
	a, b := newImgServer(t, img), newImgServer(t, img)
	a.set(func(s *imgServer) { s.down = true })
	f := fetcher(t, img, a, b)
	got, err := fetchAll(t, f)
	if err != nil || !bytes.Equal(got, img.stream) {
		t.Fatalf("err %v", err)
	}
	for _, r := range a.log() {
		if strings.Contains(r, "/chunk/") {
			t.Errorf("chunk asked of the server that failed the index: %s", r)
		}
	}
	// A closed server (connection refused).
	c := newImgServer(t, img)
	c.srv.Close()
	f = fetcher(t, img, c, b)
	if got, err = fetchAll(t, f); err != nil || !bytes.Equal(got, img.stream) {
		t.Fatalf("closed first server: %v", err)
	}
	// A chunk missing on the first server only.
	d := newImgServer(t, img)
	d.set(func(s *imgServer) { s.missing[img.ix.Chunks[1].SHA256] = true })
	if got, err = fetchAll(t, fetcher(t, img, d, b)); err != nil || !bytes.Equal(got, img.stream) {
		t.Fatalf("missing chunk: %v", err)
	}
}

// TestFetchIndexDigest: a server whose index is not wwimage= is passed
// over; with no server holding it the fetch fails with the digest error.
func TestFetchIndexDigest(t *testing.T) {
	img := sharedImage(t)
	other := makeImage(t, archive(t, []testFile{{name: "x", mode: 0o100644, data: "other"}}), 1024)
	a, b := newImgServer(t, img), newImgServer(t, img)
	a.set(func(s *imgServer) { s.index = other.index })
	if got, err := fetchAll(t, fetcher(t, img, a, b)); err != nil || !bytes.Equal(got, img.stream) {
		t.Fatalf("err %v", err)
	}
	b.set(func(s *imgServer) { s.index = other.index })
	f := fetcher(t, img, a, b)
	f.o.Rounds = 1
	if _, err := f.Index(t.Context()); !errors.Is(err, chunkimage.ErrDigest) {
		t.Fatalf("err %v, want a digest error", err)
	}
}

func TestFetchCancel(t *testing.T) {
	img := sharedImage(t)
	s := newImgServer(t, img)
	s.set(func(s *imgServer) { s.stallAt[img.ix.Chunks[0].SHA256] = 10 })
	f := fetcher(t, img, s)
	f.o.IdleTimeout = time.Hour
	ix, err := f.Index(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st := f.Stream(t.Context(), ix)
	buf := make([]byte, 1)
	done := make(chan error, 1)
	go func() {
		_, err := st.Read(buf)
		done <- err
	}()
	st.Close() // cancels the stalled fetch and waits for the workers
	if err := <-done; err == nil {
		t.Fatal("Read after Close succeeded")
	}
}

// TestFetchFailoverToUnbuiltServer: the server in use loses a chunk mid-image;
// the next one has not built the image yet (wwserver builds the chunks
// when a node asks for the index). The node asks it for the index first,
// so its chunks are there, and the boot goes on from it.
func TestFetchFailoverToUnbuiltServer(t *testing.T) {
	img := sharedImage(t)
	a, b := newImgServer(t, img), newImgServer(t, img)
	c := img.ix.Chunks[3]
	a.set(func(s *imgServer) { s.missing[c.SHA256] = true })
	b.set(func(s *imgServer) { s.lazy = true })
	f := fetcher(t, img, a, b)
	f.o.Rounds = 2
	got, err := fetchAll(t, f)
	if err != nil || !bytes.Equal(got, img.stream) {
		t.Fatalf("err %v, stream equal %v", err, bytes.Equal(got, img.stream))
	}
	if n := b.hits(c.SHA256); n != 1 {
		t.Errorf("chunk asked of b %d times, want once (after its index)", n)
	}
	idx, chunk := -1, -1
	for i, r := range b.log() {
		if strings.HasPrefix(r, "GET /index/") && idx < 0 {
			idx = i
		}
		if strings.HasPrefix(r, "GET /chunk/") && chunk < 0 {
			chunk = i
		}
	}
	if idx < 0 || chunk < idx {
		t.Errorf("b: index asked at %d, first chunk at %d: %q", idx, chunk, b.log())
	}
}

// TestFetchBackoffAcrossServers: with every server failing, attempts go
// round the servers in wwserver= order, each wait drawn from the capped
// exponential backoff, until rounds × servers attempts have failed.
func TestFetchBackoffAcrossServers(t *testing.T) {
	img := sharedImage(t)
	var mu sync.Mutex
	var order []string
	var urls []*url.URL
	for _, name := range []string{"a", "b", "c"} {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			http.Error(w, "down for the test", http.StatusServiceUnavailable)
		}))
		t.Cleanup(s.Close)
		u, _ := url.Parse(s.URL)
		urls = append(urls, u)
	}
	f, err := NewFetcher(FetchOptions{Servers: urls, MAC: testMAC, Digest: img.digest, Rounds: 3,
		BackoffMin: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	f.sleep = func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return nil }
	if _, err := f.Index(t.Context()); err == nil || !strings.Contains(err.Error(), "gave up after 9 attempts on 3 server(s)") {
		t.Fatalf("err %v", err)
	}
	if got := strings.Join(order, ""); got != "abcabcabc" {
		t.Errorf("servers asked in order %q, want abcabcabc", got)
	}
	if len(waits) != 8 {
		t.Fatalf("%d waits, want 8 (between 9 attempts): %v", len(waits), waits)
	}
	for i, d := range waits {
		ceil := min(100*time.Millisecond<<i, 400*time.Millisecond)
		if d < ceil/2 || d > ceil {
			t.Errorf("wait %d: %v, want within [%v, %v]", i, d, ceil/2, ceil)
		}
	}
}
