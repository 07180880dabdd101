package integration

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
)

// TestSecondStageBigImage (make test-big; WW_BIG=1): an image whose
// compressed archive is larger than 4 GiB (4.5 GiB of incompressible data
// plus the lab image) is built by a real wwserver on loopback and fetched
// and unpacked by the second stage into a tmpfs, as /init does on a node
// (no QEMU: the figure is the server's build and the second stage's
// fetch + verify + unpack rate). Every big file's sha256 is checked after.
func TestSecondStageBigImage(t *testing.T) {
	if os.Getenv("WW_BIG") != "1" {
		t.Skip("a 4.5 GiB image (minutes, ~10 GB of disk, 5 GiB of RAM): run by make test-big")
	}
	ctx, cancel := context.WithTimeout(rootCtx, 50*time.Minute)
	defer cancel()
	tree := realTree(t, paths(t, true).Image)
	const files, each = 5, 900 << 20
	start := time.Now()
	sums := map[string]string{}
	for i := range files {
		name := fmt.Sprintf("opt/big/part%d.bin", i)
		sum, err := writeRandom(filepath.Join(tree, "images", "default", "rootfs", name), each, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		sums[name] = sum
	}
	t.Logf("generated %d × %d MiB of random data in %s", files, each>>20, time.Since(start).Round(time.Second))

	srv := startReal(t, ctx, tree, freeAddr(t))
	start = time.Now()
	digest := imageDigest(t, ctx, srv.url()) // builds the chunked image
	build := time.Since(start)
	ix := bigIndex(t, ctx, srv.url(), digest)
	t.Logf("server build (chunk + zstd + sha256 + write): %s for %.2f GiB, %d chunks, %.2f GiB compressed (%.0f MiB/s)",
		build.Round(time.Second), float64(ix.Size)/(1<<30), len(ix.Chunks), float64(ix.CompressedSize())/(1<<30),
		float64(ix.Size)/(1<<20)/build.Seconds())
	if ix.CompressedSize() <= 4<<30 {
		t.Fatalf("compressed image %d bytes, want more than 4 GiB", ix.CompressedSize())
	}

	root := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "mode=0755,size=6g"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(root, unix.MNT_DETACH) })
	u, _ := url.Parse(srv.url())
	start = time.Now()
	console, err := loadInto(t, ctx, newFetcher(t, digest, u), 64<<30, root)
	dir := root
	took := time.Since(start)
	if err != nil {
		t.Fatalf("second stage: %v\nconsole:\n%s", err, console)
	}
	t.Logf("console:\n%s", console)
	t.Logf("second stage: %.2f GiB fetched (%.2f GiB compressed), verified and unpacked into tmpfs in %s: %.0f MiB/s",
		float64(ix.Size)/(1<<30), float64(ix.CompressedSize())/(1<<30), took.Round(time.Second), float64(ix.Size)/(1<<20)/took.Seconds())
	for name, want := range sums {
		got, err := fileSHA256(filepath.Join(dir, name))
		if err != nil || got != want {
			t.Errorf("%s: sha256 %s (%v), want %s", name, got, err, want)
		}
	}
	if out, _ := exec.Command("df", "-h", root).CombinedOutput(); len(out) > 0 {
		t.Logf("tmpfs:\n%s", out)
	}
}

// writeRandom writes size bytes of ChaCha8 output (incompressible) and
// returns their sha256.
func writeRandom(path string, size int64, seed uint64) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var key [32]byte
	copy(key[:], strconv.FormatUint(seed, 10))
	rng := rand.NewChaCha8(key)
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.CopyN(w, rng, size); err != nil {
		return "", err
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// bigIndex fetches and parses the node's index.
func bigIndex(t *testing.T, ctx context.Context, base, digest string) *chunkimage.Index {
	t.Helper()
	body, err := getLong(ctx, nodeapi.ImageIndex.URL(base, realMAC))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := chunkimage.Parse([]byte(body), digest)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}
