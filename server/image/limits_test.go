package image

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSpace replaces freeSpace for a test: a file system of total bytes
// with base bytes available before the import, less what the tree under
// dir holds (so what the import writes is seen). It records the largest
// size of what is under dir outside rootfs/ (temporary copies).
type fakeSpace struct {
	total, base int64
	tree        string
	calls       int
	maxExtra    int64
}

func (f *fakeSpace) install(t *testing.T) {
	t.Helper()
	old := freeSpace
	freeSpace = func(dir string) (fsSpace, error) {
		f.calls++
		used, extra := du(f.tree)
		f.maxExtra = max(f.maxExtra, extra)
		return fsSpace{avail: uint64(max(f.base-used, 0)), total: uint64(f.total)}, nil
	}
	t.Cleanup(func() { freeSpace = old })
}

// du is the bytes of the regular files under dir, and of those not in a rootfs/.
func du(dir string) (all, extra int64) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		all += fi.Size()
		if !strings.Contains(p, "/rootfs/") {
			extra += fi.Size()
		}
		return nil
	})
	return all, extra
}

func zeroEntries(n int, size int) []entry {
	es := []entry{{name: "boot/vmlinuz-6.1", body: "k"}}
	for i := range n {
		es = append(es, entry{name: "data/f" + string(rune('a'+i%26)) + string(rune('a'+i/26)), body: string(make([]byte, size))})
	}
	return es
}

func gzipBytes(data []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}

func checkLimitRefused(t *testing.T, tree, name string, err error, want string) {
	t.Helper()
	t.Log(err)
	var le *LimitError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want a LimitError about %q", err, want)
	}
	if _, err := os.Stat(filepath.Join(tree, "images", name)); !os.IsNotExist(err) {
		t.Errorf("refused import of a new image left images/%s: %v", name, err)
	}
}

// --max-size: a small tar.gz that expands to 50 MB is refused against
// 10 MB, before the file is written; so is a docker archive.
func TestImportMaxSize(t *testing.T) {
	layer := tarBytes(t, zeroEntries(1, 50<<20))
	work := t.TempDir()
	rootfs := filepath.Join(work, "rootfs.tar.gz")
	os.WriteFile(rootfs, gzipBytes(layer), 0o644)
	docker := filepath.Join(work, "docker.tar")
	dockerSave(t, docker, []string{"layer.tar"}, [][]byte{layer}, [][]byte{layer})
	dockerGz := filepath.Join(work, "docker.tar.gz")
	gzipFile(t, docker, dockerGz)
	for _, src := range []string{rootfs, dockerGz} {
		t.Run(filepath.Base(src), func(t *testing.T) {
			tree := t.TempDir()
			fs := &fakeSpace{total: 1 << 40, base: 1 << 39, tree: tree}
			fs.install(t)
			_, err := Import(t.Context(), Options{Tree: tree, Name: "big", Source: src, MaxSize: 10 << 20})
			checkLimitRefused(t, tree, "big", err, "larger than --max-size 10.0 MiB")
			if fs.maxExtra > 1<<20 {
				t.Errorf("%d bytes written outside the new tree (an unpacked copy of the archive?)", fs.maxExtra)
			}
			if src != rootfs {
				return
			}
			// The same with room to spare.
			if _, err := Import(t.Context(), Options{Tree: tree, Name: "big", Source: src, MaxSize: 60 << 20}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The reserve: an import that would leave less free than the reserve is
// refused, before the file system fills; NoReserve lifts it.
func TestImportReserve(t *testing.T) {
	src := filepath.Join(t.TempDir(), "rootfs.tar.gz")
	os.WriteFile(src, gzipBytes(tarBytes(t, zeroEntries(12, 2<<20))), 0o644)
	tree := t.TempDir()
	total := int64(100 << 30)
	reserve := DefaultReserve(uint64(total)) // 5 GiB
	if reserve != 5<<30 {
		t.Fatalf("DefaultReserve(100 GiB) = %d", reserve)
	}
	fs := &fakeSpace{total: total, base: reserve + 10<<20, tree: tree}
	fs.install(t)
	_, err := Import(t.Context(), Options{Tree: tree, Name: "img", Source: src})
	checkLimitRefused(t, tree, "img", err, "less than the reserve of 5.00 GiB")
	if fs.maxExtra > 4096 || fs.calls < 5 {
		t.Errorf("free space checked %d times, %d bytes outside the new tree", fs.calls, fs.maxExtra)
	}
	// Already short: refused before anything is opened.
	fs.base = reserve - 1
	_, err = Import(t.Context(), Options{Tree: tree, Name: "img", Source: src})
	checkLimitRefused(t, tree, "img", err, "less than the reserve")
	if _, err := Import(t.Context(), Options{Tree: tree, Name: "img", Source: src, Reserve: NoReserve}); err != nil {
		t.Fatal(err)
	}
	fs.base = 1 << 40
	if _, err := Import(t.Context(), Options{Tree: tree, Name: "img", Source: src, Reserve: 1 << 20}); err != nil {
		t.Fatal(err)
	}
}

// A 4 GiB sparse entry in a tiny tar is refused at once, against its full
// size, when it would not fit above the reserve.
func TestImportSparseEntryRefused(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "root/boot"), 0o755)
	os.WriteFile(filepath.Join(dir, "root/boot/vmlinuz-1"), []byte("k"), 0o644)
	if err := os.Truncate(filepath.Join(dir, "root/hole"), 0); err != nil {
		f, _ := os.Create(filepath.Join(dir, "root/hole"))
		f.Close()
	}
	if err := os.Truncate(filepath.Join(dir, "root/hole"), 4<<30); err != nil {
		t.Skip(err)
	}
	src := filepath.Join(dir, "sparse.tar")
	if out, err := exec.Command("tar", "--sparse", "-C", filepath.Join(dir, "root"), "-cf", src, ".").CombinedOutput(); err != nil {
		t.Skipf("GNU tar --sparse: %v %s", err, out)
	}
	if fi, _ := os.Stat(src); fi.Size() > 2<<20 {
		t.Fatalf("sparse tar is %d bytes", fi.Size())
	}
	tree := t.TempDir()
	fs := &fakeSpace{total: 100 << 30, base: 6 << 30, tree: tree} // 1 GiB above the 5 GiB reserve
	fs.install(t)
	_, err := Import(t.Context(), Options{Tree: tree, Name: "img", Source: src})
	checkLimitRefused(t, tree, "img", err, "after this 4.00 GiB file")
	_, err = Import(t.Context(), Options{Tree: tree, Name: "img", Source: src, Reserve: NoReserve, MaxSize: 1 << 30})
	checkLimitRefused(t, tree, "img", err, "--max-size")

	// A sparse file that fits is imported whole (it was skipped once).
	if err := os.Truncate(filepath.Join(dir, "root/hole"), 8<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "--sparse", "-C", filepath.Join(dir, "root"), "-cf", src, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	if _, err := Import(t.Context(), Options{Tree: tree, Name: "img", Source: src}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(tree, "images/img/rootfs/hole")); err != nil || fi.Size() != 8<<20 {
		t.Errorf("sparse file: %v %v", fi, err)
	}
}

func TestDefaultReserve(t *testing.T) {
	for _, c := range []struct{ fs, want int64 }{
		{100 << 30, 5 << 30},   // 5%
		{10 << 30, 1 << 30},    // at least 1 GiB
		{1 << 30, 512 << 20},   // at most half
		{1000 << 30, 50 << 30}, // 5%
		{0, 0},
	} {
		if got := DefaultReserve(uint64(c.fs)); got != c.want {
			t.Errorf("DefaultReserve(%d) = %d, want %d", c.fs, got, c.want)
		}
	}
}
