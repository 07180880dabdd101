package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
)

// testStream is a newc cpio archive of n files of pseudo-random sizes and
// content (seeded: the same arguments give the same bytes); file changed
// gets other content when changed is >= 0.
func testStream(t testing.TB, n int, changed int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	rng := rand.New(rand.NewPCG(1, 2))
	src := rand.NewChaCha8([32]byte{1})
	for i := range n {
		size := 1000 + rng.IntN(300<<10)
		data := make([]byte, size)
		_, _ = src.Read(data)
		for j := range data {
			data[j] &= 0x03 // compressible, but not trivially
		}
		if i == changed {
			copy(data, "this file changed in the second version")
		}
		hdr := &cpio.Header{Name: fmt.Sprintf("usr/lib/file%04d", i), Mode: cpio.TypeReg | 0o644, Size: int64(size),
			ModTime: time.Unix(1700000000, 0)}
		if err := w.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func build(t *testing.T, s *Store, stream []byte) (*chunkimage.Index, Stats) {
	t.Helper()
	ix, st, release, err := s.Build(context.Background(), bytes.NewReader(stream), BuildOptions{Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	release()
	return ix, st
}

// reassemble decompresses every chunk of ix from the store, in order.
func reassemble(t *testing.T, s *Store, ix *chunkimage.Index) []byte {
	t.Helper()
	var out []byte
	for _, c := range ix.Chunks {
		data, err := os.ReadFile(filepath.Join(s.Dir(), c.SHA256))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Verify(data); err != nil {
			t.Fatal(err)
		}
		raw, err := c.Decompress(nil, data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw...)
	}
	return out
}

func TestBuildRoundTripAndDigest(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stream := testStream(t, 60, -1)
	ix, st := build(t, s, stream)
	if ix.Size != int64(len(stream)) {
		t.Fatalf("index size %d, stream %d", ix.Size, len(stream))
	}
	if len(ix.Chunks) < 4 {
		t.Fatalf("only %d chunks for %d bytes", len(ix.Chunks), len(stream))
	}
	for i, c := range ix.Chunks[:len(ix.Chunks)-1] {
		if c.USize < MinChunk || c.USize > MaxChunk {
			t.Errorf("chunk %d: %d bytes, outside %d..%d", i, c.USize, MinChunk, MaxChunk)
		}
	}
	if st.Stored != len(ix.Chunks) || st.Reused != 0 {
		t.Errorf("first build: %+v", st)
	}
	if got := reassemble(t, s, ix); !bytes.Equal(got, stream) {
		t.Fatal("reassembled chunks differ from the stream")
	}
	data, digest, err := ix.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if digest != chunkimage.Digest(data) {
		t.Fatal("digest is not the sha256 of the index bytes")
	}
	back, err := chunkimage.Parse(data, digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Chunks) != len(ix.Chunks) {
		t.Fatal("parsed index differs")
	}

	// The same stream again: the same index bytes, every chunk reused.
	ix2, st2 := build(t, s, stream)
	data2, digest2, _ := ix2.Marshal()
	if digest2 != digest || !bytes.Equal(data, data2) {
		t.Fatal("the same stream gave another index")
	}
	if st2.Stored != 0 || st2.Reused != len(ix.Chunks) {
		t.Errorf("second build of the same stream: %+v", st2)
	}
}

// TestChunksSharedAcrossVersions: two image versions that differ in one file
// share all chunks but the one or two around that file.
func TestChunksSharedAcrossVersions(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v1, v2 := testStream(t, 60, -1), testStream(t, 60, 30)
	ix1, _ := build(t, s, v1)
	ix2, st2 := build(t, s, v2)
	_, d1, _ := ix1.Marshal()
	_, d2, _ := ix2.Marshal()
	if d1 == d2 {
		t.Fatal("different images, same digest")
	}
	old := map[string]bool{}
	for _, c := range ix1.Chunks {
		old[c.SHA256] = true
	}
	fresh := 0
	for _, c := range ix2.Chunks {
		if !old[c.SHA256] {
			fresh++
		}
	}
	t.Logf("v2: %d chunks, %d new, stats %+v", len(ix2.Chunks), fresh, st2)
	if fresh == 0 || fresh > 2 {
		t.Errorf("one changed file made %d new chunks of %d; want 1 or 2", fresh, len(ix2.Chunks))
	}
	if st2.Stored != fresh {
		t.Errorf("stored %d chunk files, %d are new", st2.Stored, fresh)
	}
	if got := reassemble(t, s, ix2); !bytes.Equal(got, v2) {
		t.Fatal("v2 does not reassemble")
	}
}

// TestCorruptChunkDetected: a flipped byte in a stored chunk fails its
// verification (client side: Chunk.Verify; server side: Store.Verify), and
// the next build does not reuse the corrupt file but rewrites it.
func TestCorruptChunkDetected(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	stream := testStream(t, 40, -1)
	ix, _ := build(t, s, stream)
	c := ix.Chunks[1]
	p := filepath.Join(dir, c.SHA256)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(data); !errors.Is(err, chunkimage.ErrDigest) {
		t.Fatalf("Verify of a corrupt chunk: %v", err)
	}
	if err := s.Verify(c.SHA256); !errors.Is(err, chunkimage.ErrDigest) {
		t.Fatalf("Store.Verify of a corrupt chunk: %v", err)
	}
	// A new process (a new Store) must not trust the file.
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, st := build(t, s2, stream)
	if st.Stored != 1 {
		t.Errorf("rebuild stored %d chunks, want the 1 corrupt one", st.Stored)
	}
	if err := s2.Verify(c.SHA256); err != nil {
		t.Fatalf("after the rebuild: %v", err)
	}
}

func TestBuildEmptyAndErrors(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ix, _ := build(t, s, nil)
	if ix.Size != 0 || len(ix.Chunks) != 0 {
		t.Fatalf("empty stream: %+v", ix)
	}
	if _, _, err := ix.Marshal(); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	_, _, _, err = s.Build(context.Background(), io.MultiReader(bytes.NewReader(testStream(t, 20, -1)), errReader{boom}), BuildOptions{Workers: 2})
	if !errors.Is(err, boom) {
		t.Fatalf("failing reader: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, _, err := s.Build(ctx, bytes.NewReader(testStream(t, 20, -1)), BuildOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestOpenChunkAndPrune(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ix, _ := build(t, s, testStream(t, 30, -1))
	if _, _, err := s.OpenChunk("../etc/passwd"); !errors.Is(err, ErrBadDigest) {
		t.Fatalf("bad name: %v", err)
	}
	if _, _, err := s.OpenChunk(chunkimage.Digest([]byte("nope"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing chunk: %v", err)
	}
	f, fi, err := s.OpenChunk(ix.Chunks[0].SHA256)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi.Size() != ix.Chunks[0].Size {
		t.Fatal("size")
	}
	if err := s.Has(ix); err != nil {
		t.Fatal(err)
	}
	// Age every file; keep chunk 1 by index, chunk 0 was served just now.
	old := time.Now().Add(-time.Hour)
	for _, c := range ix.Chunks {
		if err := os.Chtimes(filepath.Join(dir, c.SHA256), old, old); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := time.Now().Add(-30 * time.Minute)
	keep := func(d string) bool { return d == ix.Chunks[1].SHA256 }
	n, err := s.Prune(cutoff, keep)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ix.Chunks)-2 {
		t.Errorf("pruned %d of %d chunks, want all but 2", n, len(ix.Chunks))
	}
	for i, c := range ix.Chunks {
		_, err := os.Stat(filepath.Join(dir, c.SHA256))
		if (i < 2) != (err == nil) {
			t.Errorf("chunk %d: exists=%v after prune", i, err == nil)
		}
	}
	if err := s.Has(ix); err == nil {
		t.Error("Has after prune: want an error")
	}
}
