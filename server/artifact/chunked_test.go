package artifact

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
)

// chunkedStream reassembles an image index's chunks into the uncompressed
// stream, through Builder.Chunk.
func chunkedStream(t *testing.T, b *Builder, ix *ImageIndex) []byte {
	t.Helper()
	var out []byte
	for _, c := range ix.Index.Chunks {
		a, err := b.Chunk(c.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		data := readAll(t, a)
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

// TestImageIndexSameStreamAsImage: the chunked image is the gzip image's
// stream, cut and compressed otherwise; it is built once, adopted by a new
// builder, and rebuilt when the image changes.
func TestImageIndexSameStreamAsImage(t *testing.T) {
	// No file counts as racy (hashed by content while fresh): a second
	// builder must derive the same key to adopt the index.
	defer func(w time.Duration) { racyWindow = w }(racyWindow)
	racyWindow = 0
	tt := newTree(t)
	tt.standard()
	big := make([]byte, 3<<20)
	rng := rand.NewChaCha8([32]byte{7})
	_, _ = rng.Read(big)
	for i := range big {
		big[i] = 'a' + big[i]%8
	}
	tt.file("images/debian/rootfs/usr/lib/big", string(big), 0o644)
	b, reg := newBuilder(t, tt.root)
	snap := snapshot(t, testNodesTOML)
	n := snap.Nodes.ByName["n001"]

	ix, err := b.ImageIndex(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	if ix.Digest != chunkimage.Digest(ix.Data) {
		t.Fatal("digest is not the sha256 of the index bytes")
	}
	if _, err := chunkimage.Parse(ix.Data, ix.Digest); err != nil {
		t.Fatal(err)
	}
	img, err := b.Image(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	want := members(t, readAll(t, img))[0]
	if got := chunkedStream(t, b, ix); !bytes.Equal(got, want) {
		t.Fatalf("chunked stream (%d bytes) differs from the gzip image's (%d bytes)", len(got), len(want))
	}
	if ix.Index.Size != int64(len(want)) {
		t.Fatalf("index size %d, stream %d", ix.Index.Size, len(want))
	}

	// Cached for every node of the image.
	ix2, err := b.ImageIndex(bg, snap, snap.Nodes.ByName["n002"])
	if err != nil {
		t.Fatal(err)
	}
	if ix2 != ix {
		t.Error("second node got another index")
	}
	if got := counter(t, reg, "wwserver_build_builds_total", kindChunked); got != 1 {
		t.Errorf("%v chunked builds, want 1", got)
	}

	// A new builder (process) adopts the index from disk.
	b2, reg2 := newBuilder(t, tt.root)
	ix3, err := b2.ImageIndex(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	if ix3.Digest != ix.Digest || counter(t, reg2, "wwserver_build_builds_total", kindChunked) != 0 {
		t.Errorf("a new builder rebuilt (digest %s vs %s)", ix3.Digest, ix.Digest)
	}

	// One file changes: a new digest, most chunks shared.
	tt.file("images/debian/rootfs/etc/os-release", "ID=debian\nVERSION=13\n", 0o644)
	ix4, err := b.ImageIndex(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	if ix4.Digest == ix.Digest {
		t.Fatal("changed image, same digest")
	}
	shared := 0
	old := map[string]bool{}
	for _, c := range ix.Index.Chunks {
		old[c.SHA256] = true
	}
	for _, c := range ix4.Index.Chunks {
		if old[c.SHA256] {
			shared++
		}
	}
	t.Logf("chunks: %d, then %d (%d shared)", len(ix.Index.Chunks), len(ix4.Index.Chunks), shared)
	if len(ix.Index.Chunks) > 2 && shared == 0 {
		t.Error("no chunk shared between the two versions")
	}
}

func TestChunkNotFound(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	b, _ := newBuilder(t, tt.root)
	for _, name := range []string{"../../etc/passwd", strings.Repeat("0", 64), "ABC"} {
		if _, err := b.Chunk(name); !errors.Is(err, ErrNotFound) {
			t.Errorf("Chunk(%q): %v, want ErrNotFound", name, err)
		}
	}
}

// TestChunkOpenedOnce: the chunk Artifact hands its already open file to
// the first Open (no second open per request); a later Open opens the
// file again; both read the stored bytes.
func TestChunkOpenedOnce(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	b, _ := newBuilder(t, tt.root)
	snap := snapshot(t, testNodesTOML)
	ix, err := b.ImageIndex(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	c := ix.Index.Chunks[0]
	a, err := b.Chunk(c.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(a.Parts[0])
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(want)) != a.Size || a.Size != c.Size {
		t.Fatalf("chunk %d bytes on disk, Artifact says %d, index %d", len(want), a.Size, c.Size)
	}
	first := a.opened.Load()
	if first == nil {
		t.Fatal("Chunk did not keep its open file")
	}
	for i := range 2 {
		f, err := a.Open()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 && f != io.ReadSeekCloser(first) {
			t.Error("first Open opened the file again")
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("Open %d: %d bytes (%v), want the chunk's %d", i, len(got), err, len(want))
		}
	}
}

// TestPruneChunks: chunks of an index in use stay; after the image changed
// and the old index was not asked for, its own chunks go.
func TestPruneChunks(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	b, _ := newBuilder(t, tt.root)
	snap := snapshot(t, testNodesTOML)
	n := snap.Nodes.ByName["n001"]
	ix, err := b.ImageIndex(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	tt.file("images/debian/rootfs/etc/os-release", "ID=other\n", 0o644)
	ix2, err := b.ImageIndex(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	// Everything on disk is old; the first index was last used long ago.
	old := time.Now().Add(-2 * time.Hour)
	filepath.Walk(filepath.Join(b.state, chunksDir), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			os.Chtimes(p, old, old)
		}
		return nil
	})
	ix.used.Store(old.UnixNano())
	if _, err := b.Prune(time.Hour); err != nil {
		t.Fatal(err)
	}
	keep := map[string]bool{}
	for _, c := range ix2.Index.Chunks {
		keep[c.SHA256] = true
		if _, err := os.Stat(filepath.Join(b.state, chunksDir, chunkStoreDir, c.SHA256)); err != nil {
			t.Errorf("chunk of the index in use pruned: %v", err)
		}
	}
	for _, c := range ix.Index.Chunks {
		_, err := os.Stat(filepath.Join(b.state, chunksDir, chunkStoreDir, c.SHA256))
		if !keep[c.SHA256] && err == nil {
			t.Errorf("chunk %s of the unused index kept", c.SHA256[:12])
		}
	}
	if _, err := os.Stat(b.indexPath(ix.key)); err == nil {
		t.Error("unused index file kept")
	}
	if _, err := os.Stat(b.indexPath(ix2.key)); err != nil {
		t.Errorf("index in use pruned: %v", err)
	}
}

// TestKernelModules: the network drivers and their dependencies, through
// the image's lib -> usr/lib symlink; other modules are left out.
func TestKernelModules(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	r := "images/debian/rootfs/"
	tt.symlink(r+"lib", "usr/lib")
	md := r + "usr/lib/modules/6.1.0-28-amd64/"
	dep := "kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko\n" +
		"kernel/net/core/failover.ko:\nkernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n" +
		"kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio.ko:\n" +
		"kernel/drivers/net/wireless/iwlwifi.ko: kernel/net/wireless/cfg80211.ko\nkernel/net/wireless/cfg80211.ko:\n" +
		"kernel/fs/xfs/xfs.ko:\n"
	tt.file(md+"modules.dep", dep, 0o644)
	tt.file(md+"modules.alias", "alias virtio:d00000001v* virtio_net\n", 0o644)
	tt.file(md+"modules.symbols", "not copied\n", 0o644)
	for _, m := range []string{"kernel/drivers/net/virtio_net.ko", "kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko",
		"kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/virtio/virtio.ko", "kernel/drivers/net/wireless/iwlwifi.ko",
		"kernel/net/wireless/cfg80211.ko", "kernel/fs/xfs/xfs.ko"} {
		tt.file(md+m, "module "+m, 0o644)
	}
	b, _ := newBuilder(t, tt.root)
	snap := snapshot(t, testNodesTOML)
	a, err := b.KernelModules(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != ModulesName {
		t.Errorf("name %q", a.Name)
	}
	files := unpack(t, a)
	var names []string
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	t.Logf("%s", strings.Join(names, "\n"))
	m := "usr/lib/modules/6.1.0-28-amd64/"
	for _, want := range []string{"lib", "usr", "usr/lib", "usr/lib/modules", m + "modules.dep", m + "modules.alias",
		m + "kernel/drivers/net/virtio_net.ko", m + "kernel/net/core/failover.ko", m + "kernel/drivers/net/net_failover.ko",
		m + "kernel/drivers/virtio/virtio_pci.ko", m + "kernel/drivers/virtio/virtio.ko", m + "kernel/drivers/net"} {
		if _, ok := files[want]; !ok {
			t.Errorf("missing %s", want)
		}
	}
	for _, bad := range []string{m + "kernel/drivers/net/wireless/iwlwifi.ko", m + "kernel/net/wireless/cfg80211.ko",
		m + "kernel/fs/xfs/xfs.ko", m + "modules.symbols", "etc/os-release"} {
		if _, ok := files[bad]; ok {
			t.Errorf("%s should not be there", bad)
		}
	}
	if l := files["lib"]; l.hdr.Linkname != "usr/lib" {
		t.Errorf("lib is %+v, want the symlink to usr/lib", l)
	}

	// An image without modules: an empty (but valid) archive.
	tt2 := newTree(t)
	tt2.standard()
	b2, _ := newBuilder(t, tt2.root)
	a2, err := b2.KernelModules(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(readAll(t, a2)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	if !bytes.Contains(raw, []byte("TRAILER!!!")) || bytes.Contains(raw, []byte("modules")) {
		t.Errorf("empty module archive: %q", raw)
	}
}

// TestImageIndexConcurrent: nodes asking at once share one build.
func TestImageIndexConcurrent(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	b, reg := newBuilder(t, tt.root)
	snap := snapshot(t, testNodesTOML)
	const n = 8
	digests := make(chan string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := snap.Nodes.List[i%len(snap.Nodes.List)]
			ix, err := b.ImageIndex(bg, snap, node)
			if err != nil {
				t.Error(err)
				return
			}
			digests <- ix.Digest
		}()
	}
	wg.Wait()
	close(digests)
	first := ""
	for d := range digests {
		if first == "" {
			first = d
		}
		if d != first {
			t.Errorf("digests differ: %s %s", d, first)
		}
	}
	if got := counter(t, reg, "wwserver_build_builds_total", kindChunked); got != 1 {
		t.Errorf("%v chunked builds, want 1", got)
	}
}
