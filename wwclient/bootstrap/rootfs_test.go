package bootstrap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func lstat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

// mountTmpfs mounts a tmpfs at dir (a different device), or skips.
func mountTmpfs(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
}

func TestCopyTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (owners)")
	}
	src := t.TempDir()
	mt := time.Unix(1500000000, 0)
	must(t, os.MkdirAll(filepath.Join(src, "etc/ro"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "etc/ro/file"), []byte("inside read-only dir"), 0o644))
	must(t, os.Chmod(filepath.Join(src, "etc/ro"), 0o555))
	must(t, os.WriteFile(filepath.Join(src, "etc/shadow"), []byte("root::0:"), 0o600))
	must(t, os.Chown(filepath.Join(src, "etc/shadow"), 1234, 5678))
	must(t, os.MkdirAll(filepath.Join(src, "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "bin/busybox"), []byte("ELF"), 0o755))
	must(t, os.Chmod(filepath.Join(src, "bin/busybox"), 0o4755|fs.ModeSetuid))
	must(t, os.Chtimes(filepath.Join(src, "bin/busybox"), mt, mt))
	must(t, os.Symlink("/bin/busybox", filepath.Join(src, "bin/sh")))
	must(t, os.Symlink("../run", filepath.Join(src, "varrun")))
	must(t, os.Link(filepath.Join(src, "bin/busybox"), filepath.Join(src, "bin/hardlink")))
	must(t, syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644))
	must(t, os.Mkdir(filepath.Join(src, "tmp"), 0o755))
	must(t, os.Chmod(filepath.Join(src, "tmp"), 0o1777|fs.ModeSticky))
	must(t, os.Chtimes(filepath.Join(src, "etc"), mt, mt))
	dst := filepath.Join(src, "newroot") // inside src, like /newroot
	must(t, os.Mkdir(dst, 0o755))
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "etc/ro"), 0o755); os.Chmod(filepath.Join(dst, "etc/ro"), 0o755) })

	must(t, CopyTree(src, dst, nil))

	if b, err := os.ReadFile(filepath.Join(dst, "etc/ro/file")); err != nil || string(b) != "inside read-only dir" {
		t.Fatalf("%q %v", b, err)
	}
	if st := lstat(t, filepath.Join(dst, "etc/ro")); st.Mode&0o7777 != 0o555 {
		t.Errorf("ro dir mode %o", st.Mode&0o7777)
	}
	if st := lstat(t, filepath.Join(dst, "etc/shadow")); st.Mode&0o7777 != 0o600 || st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("shadow mode %o owner %d:%d", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if st := lstat(t, filepath.Join(dst, "bin/busybox")); st.Mode&0o7777 != 0o4755 || st.Mtim.Sec != mt.Unix() {
		t.Errorf("busybox mode %o mtime %d", st.Mode&0o7777, st.Mtim.Sec)
	}
	if st := lstat(t, filepath.Join(dst, "tmp")); st.Mode&0o7777 != 0o1777 {
		t.Errorf("tmp mode %o", st.Mode&0o7777)
	}
	if st := lstat(t, filepath.Join(dst, "etc")); st.Mtim.Sec != mt.Unix() {
		t.Errorf("dir mtime not kept: %d", st.Mtim.Sec)
	}
	if l, err := os.Readlink(filepath.Join(dst, "bin/sh")); err != nil || l != "/bin/busybox" {
		t.Errorf("symlink %q %v", l, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "varrun")); err != nil || l != "../run" {
		t.Errorf("symlink %q %v", l, err)
	}
	if a, b := lstat(t, filepath.Join(dst, "bin/busybox")), lstat(t, filepath.Join(dst, "bin/hardlink")); a.Ino != b.Ino {
		t.Error("hard link not kept")
	}
	if _, err := os.Lstat(filepath.Join(dst, "fifo")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("FIFO copied")
	}
	if _, err := os.Lstat(filepath.Join(dst, "newroot")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("destination copied into itself")
	}
}

func TestCopyTreeStaysOnDevice(t *testing.T) {
	src := t.TempDir()
	must(t, os.Mkdir(filepath.Join(src, "proc"), 0o555))
	mountTmpfs(t, filepath.Join(src, "proc"))
	must(t, os.WriteFile(filepath.Join(src, "proc/cpuinfo"), []byte("other fs"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "keep"), []byte("k"), 0o644))
	dst := t.TempDir()
	must(t, CopyTree(src, dst, nil))
	if fi, err := os.Stat(filepath.Join(dst, "proc")); err != nil || !fi.IsDir() {
		t.Fatalf("mount point not created: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "proc/cpuinfo")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("copied across a file system boundary")
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "keep")); string(b) != "k" {
		t.Fatal("same-device file missing")
	}
}

func TestRemoveTree(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "a/b/c"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "a/b/c/f"), []byte("x"), 0o644))
	must(t, os.Symlink("/etc/passwd", filepath.Join(root, "a/link")))
	must(t, os.WriteFile(filepath.Join(root, "top"), []byte("x"), 0o644))
	must(t, os.Mkdir(filepath.Join(root, "newroot"), 0o755))
	mountTmpfs(t, filepath.Join(root, "newroot"))
	must(t, os.WriteFile(filepath.Join(root, "newroot/survivor"), []byte("s"), 0o644))

	must(t, RemoveTree(root))

	entries, err := os.ReadDir(root)
	must(t, err)
	if len(entries) != 1 || entries[0].Name() != "newroot" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("left: %v", names)
	}
	if b, err := os.ReadFile(filepath.Join(root, "newroot/survivor")); err != nil || string(b) != "s" {
		t.Fatal("removed across a file system boundary")
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Fatal("followed a symlink")
	}
	if err := RemoveTree(filepath.Join(root, "missing")); err == nil {
		t.Fatal("missing dir")
	}
}

func TestOSMountPoint(t *testing.T) {
	if mp, err := (OS{}).MountPoint("/proc"); err != nil || !mp {
		t.Fatalf("/proc: %v %v", mp, err)
	}
	d := t.TempDir()
	if mp, err := (OS{}).MountPoint(d); err != nil || mp {
		t.Fatalf("%s: %v %v", d, mp, err)
	}
}

func TestOSRemoveTreeRefusesWhenNotPID1(t *testing.T) {
	d := t.TempDir()
	must(t, os.WriteFile(filepath.Join(d, "precious"), []byte("x"), 0o644))
	if err := (OS{}).RemoveTree(d); err == nil {
		t.Fatal("OS.RemoveTree ran outside PID 1")
	}
	if _, err := os.Stat(filepath.Join(d, "precious")); err != nil {
		t.Fatal("file deleted")
	}
}

// TestCopyTreeLabels: with a label function every copy (the new root
// itself included) carries the context for its path in the new root, and
// labels the function leaves out stay unset.
func TestCopyTreeLabels(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	must(t, os.MkdirAll(filepath.Join(src, "etc/ssh"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644))
	must(t, os.Symlink("/usr/lib/systemd/systemd", filepath.Join(src, "init")))
	must(t, os.WriteFile(filepath.Join(src, "unlabelled"), nil, 0o644))
	var seen []string
	label := func(p string, mode uint32) (string, bool) {
		seen = append(seen, fmt.Sprintf("%s %o", p, mode))
		if p == "/unlabelled" {
			return "", false
		}
		return "system_u:object_r:" + strings.NewReplacer("/", "_", ".", "_").Replace(p) + "_t:s0", true
	}
	if err := CopyTree(src, dst, label); err != nil {
		var lerr *LabelError
		if errors.As(err, &lerr) && errors.Is(lerr.First, syscall.EOPNOTSUPP) {
			t.Skipf("%s cannot hold security.selinux: %v", dst, err)
		}
		t.Fatal(err)
	}
	get := func(p string) string {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(p, "security.selinux", buf)
		if err != nil {
			return "(" + err.Error() + ")"
		}
		return strings.TrimRight(string(buf[:n]), "\x00")
	}
	for p, want := range map[string]string{
		"":           "system_u:object_r:__t:s0",
		"etc":        "system_u:object_r:_etc_t:s0",
		"etc/ssh":    "system_u:object_r:_etc_ssh_t:s0",
		"etc/passwd": "system_u:object_r:_etc_passwd_t:s0",
		"init":       "system_u:object_r:_init_t:s0",
	} {
		if got := get(filepath.Join(dst, p)); got != want {
			t.Errorf("/%s labelled %q, want %q", p, got, want)
		}
	}
	if got := get(filepath.Join(dst, "unlabelled")); !strings.HasPrefix(got, "(") {
		t.Errorf("/unlabelled labelled %q", got)
	}
	for _, want := range []string{"/ 40000", "/etc/passwd 100000", "/init 120000"} {
		if !slices.Contains(seen, want) {
			t.Errorf("label not asked for %q (asked: %v)", want, seen)
		}
	}
}

// TestLabelTree: an existing tree is labelled in place, dir included.
func TestLabelTree(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "shm"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "null"), nil, 0o666))
	err := LabelTree(dir, func(p string, mode uint32) (string, bool) {
		return "system_u:object_r:" + filepath.Base(p) + "_t:s0", true
	})
	var lerr *LabelError
	if errors.As(err, &lerr) && errors.Is(lerr.First, syscall.EOPNOTSUPP) {
		t.Skipf("%s cannot hold security.selinux: %v", dir, err)
	}
	must(t, err)
	for _, p := range []string{dir, filepath.Join(dir, "shm"), filepath.Join(dir, "null")} {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(p, "security.selinux", buf)
		if want := "system_u:object_r:" + filepath.Base(p) + "_t:s0\x00"; err != nil || string(buf[:n]) != want {
			t.Errorf("%s: %q %v, want %q", p, buf[:n], err, want)
		}
	}
}
