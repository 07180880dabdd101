package stage2

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/zstd"

	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
)

// testFile is one entry of a test archive.
type testFile struct {
	name string
	mode cpio.FileMode
	data string // content, or symlink target
	uid  int
	mt   time.Time
}

// archive writes a newc cpio archive of files.
func archive(t testing.TB, files []testFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	for _, f := range files {
		mt := f.mt
		if mt.IsZero() {
			mt = time.Unix(1700000000, 0)
		}
		h := &cpio.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Guid: f.uid, ModTime: mt}
		switch f.mode & cpio.ModeType {
		case cpio.TypeReg, cpio.TypeSymlink:
			h.Size = int64(len(f.data))
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 { // a symlink's target is its data in newc
			if _, err := io.WriteString(w, f.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bigArchive is an archive of n files of pseudo-random content (a stream of
// a few MiB for the fetch tests).
func bigArchive(t testing.TB, n, size int) []byte {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{3})
	files := []testFile{{name: "usr", mode: cpio.TypeDir | 0o755}, {name: "usr/lib", mode: cpio.TypeDir | 0o755}}
	for i := range n {
		b := make([]byte, size)
		_, _ = rng.Read(b)
		for j := range b {
			b[j] = 'a' + b[j]%16
		}
		files = append(files, testFile{name: fmt.Sprintf("usr/lib/f%03d", i), mode: cpio.TypeReg | 0o644, data: string(b)})
	}
	return archive(t, files)
}

// image is a chunked image made in the test: stream cut in pieces of size
// piece, each a zstd frame.
type image struct {
	stream []byte
	index  []byte
	digest string
	ix     *chunkimage.Index
	chunks map[string][]byte
}

func makeImage(t testing.TB, stream []byte, piece int) *image {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	im := &image{stream: stream, chunks: map[string][]byte{}}
	ix := &chunkimage.Index{Version: chunkimage.Version, Format: chunkimage.Format, Compression: chunkimage.Compression, Size: int64(len(stream))}
	for off := 0; off < len(stream); off += piece {
		raw := stream[off:min(off+piece, len(stream))]
		z := enc.EncodeAll(raw, nil)
		d := chunkimage.Digest(z)
		im.chunks[d] = z
		ix.Chunks = append(ix.Chunks, chunkimage.Chunk{SHA256: d, Size: int64(len(z)), USize: int64(len(raw))})
	}
	im.index, im.digest, err = ix.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	im.ix = ix
	return im
}

// imgServer serves one image like wwserver, with faults to inject.
type imgServer struct {
	t   testing.TB
	img *image
	srv *httptest.Server

	mu       sync.Mutex
	requests []string // "PATH RANGE"
	progress []Report
	// faults
	down      bool            // every request: 503
	index     []byte          // served instead of the image's index
	dropAfter map[string]int  // chunk digest: send this many bytes, then drop the connection (once)
	stallAt   map[string]int  // chunk digest: send this many bytes, then send nothing more (once)
	corrupt   map[string]bool // chunk digest: always served with a byte flipped
	missing   map[string]bool // chunk digest: 404
	noRange   bool            // ignore Range
	lazy      bool            // chunks: 404 until the index was asked for (wwserver builds on the index request)
	released  chan struct{}   // closed by the test to end stalls
	chunkHits map[string]int  // requests per chunk digest
}

func newImgServer(t testing.TB, img *image) *imgServer {
	s := &imgServer{t: t, img: img, dropAfter: map[string]int{}, stallAt: map[string]int{}, corrupt: map[string]bool{},
		missing: map[string]bool{}, chunkHits: map[string]int{}, released: make(chan struct{})}
	s.srv = httptest.NewServer(s)
	t.Cleanup(func() {
		s.release()
		s.srv.Close()
	})
	return s
}

func (s *imgServer) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.released:
	default:
		close(s.released)
	}
}

func (s *imgServer) url() *url.URL {
	u, err := url.Parse(s.srv.URL)
	if err != nil {
		s.t.Fatal(err)
	}
	return u
}

func (s *imgServer) set(fn func(s *imgServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

func (s *imgServer) hits(digest string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chunkHits[digest]
}

func (s *imgServer) log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

func (s *imgServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path+" "+r.Header.Get("Range"))
	down := s.down
	s.mu.Unlock()
	if down {
		http.Error(w, "down for the test", http.StatusServiceUnavailable)
		return
	}
	switch {
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/progress/"):
		var rep Report
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.progress = append(s.progress, rep)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case strings.HasPrefix(r.URL.Path, "/index/"):
		s.mu.Lock()
		data := s.index
		s.mu.Unlock()
		if data == nil {
			data = s.img.index
			s.mu.Lock()
			s.lazy = false // built
			s.mu.Unlock()
		}
		w.Write(data)
	case strings.HasPrefix(r.URL.Path, "/chunk/"):
		s.serveChunk(w, r, strings.TrimPrefix(r.URL.Path, "/chunk/"))
	default:
		http.NotFound(w, r)
	}
}

func (s *imgServer) serveChunk(w http.ResponseWriter, r *http.Request, d string) {
	s.mu.Lock()
	s.chunkHits[d]++
	data, ok := s.img.chunks[d]
	drop, dropOK := s.dropAfter[d]
	delete(s.dropAfter, d)
	stall, stallOK := s.stallAt[d]
	delete(s.stallAt, d)
	corrupt, missing, noRange := s.corrupt[d], s.missing[d] || s.lazy, s.noRange
	s.mu.Unlock()
	if !ok || missing {
		http.Error(w, "chunk not in this server's store", http.StatusNotFound)
		return
	}
	if corrupt {
		data = bytes.Clone(data)
		data[len(data)/2] ^= 0x55
	}
	switch {
	case dropOK || stallOK:
		n := drop
		if stallOK {
			n = stall
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data[:n])
		w.(http.Flusher).Flush()
		if stallOK {
			select {
			case <-s.released:
			case <-r.Context().Done():
			}
		}
		panic(http.ErrAbortHandler) // drops the connection
	case noRange:
		w.Write(data)
	default:
		http.ServeContent(w, r, d, time.Time{}, bytes.NewReader(data))
	}
}

// testLogger logs to t.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

const testMAC = "52:54:00:00:00:01"

func fetcher(t testing.TB, img *image, servers ...*imgServer) *Fetcher {
	t.Helper()
	var us []*url.URL
	for _, s := range servers {
		us = append(us, s.url())
	}
	f, err := NewFetcher(FetchOptions{Servers: us, MAC: testMAC, Digest: img.digest, Parallel: 3, Log: testLogger(t),
		BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond, IdleTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// fetchAll reads the whole stream.
func fetchAll(t testing.TB, f *Fetcher) ([]byte, error) {
	t.Helper()
	ctx := t.Context()
	ix, err := f.Index(ctx)
	if err != nil {
		return nil, err
	}
	s := f.Stream(ctx, ix)
	defer s.Close()
	return io.ReadAll(s)
}
