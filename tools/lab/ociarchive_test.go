package lab

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/wwcluster/ww/server/image"
)

// The lab's OCI archive imports back to the same tree (modes, owners, links).
func TestWriteOCIArchiveRoundTrip(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to set owners")
	}
	src := filepath.Join(t.TempDir(), "rootfs")
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	os.MkdirAll(filepath.Join(src, "boot"), 0o755)
	os.WriteFile(filepath.Join(src, "bin/busybox"), []byte("bb"), 0o755)
	os.Chmod(filepath.Join(src, "bin/busybox"), 0o755|os.ModeSetuid)
	os.Symlink("busybox", filepath.Join(src, "bin/sh"))
	os.WriteFile(filepath.Join(src, "boot/vmlinuz-6.1.0-1"), []byte("k"), 0o644)
	os.Lchown(filepath.Join(src, "boot"), 1000, 1001)
	if err := syscall.Mknod(filepath.Join(src, "boot/sock"), syscall.S_IFSOCK|0o600, 0); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "image.oci.tar")
	if err := WriteOCIArchive(src, archive); err != nil {
		t.Fatal(err)
	}
	tree := t.TempDir()
	m, err := image.Import(context.Background(), image.Options{Tree: tree, Name: "lab", Source: archive})
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != "oci-archive" || m.Layers != 1 {
		t.Errorf("meta %+v", m)
	}
	got := filepath.Join(tree, "images/lab/rootfs")
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(got, "bin/busybox"), &st); err != nil || st.Mode&0o7777 != 0o4755 {
		t.Errorf("bin/busybox: %v mode %o", err, st.Mode&0o7777)
	}
	if err := syscall.Stat(filepath.Join(got, "boot"), &st); err != nil || st.Uid != 1000 || st.Gid != 1001 {
		t.Errorf("boot owner %d:%d (%v)", st.Uid, st.Gid, err)
	}
	if _, err := os.Lstat(filepath.Join(got, "boot/sock")); !os.IsNotExist(err) {
		t.Errorf("socket packed: %v", err)
	}
	if l, err := os.Readlink(filepath.Join(got, "bin/sh")); err != nil || l != "busybox" {
		t.Errorf("bin/sh -> %q (%v)", l, err)
	}
}
