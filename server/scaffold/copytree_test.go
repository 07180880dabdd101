package scaffold

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCopyTree(t *testing.T) {
	src := t.TempDir()
	mk := func(p, data string, mode os.FileMode) {
		t.Helper()
		full := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := unix.Chmod(full, uint32(mode)); err != nil {
			t.Fatal(err)
		}
	}
	mk("bin/busybox", "BUSYBOX", 0o755)
	mk("usr/bin/passwd", "SUID", 0o4755)
	mk("etc/shadow", "secret", 0o640)
	mk("boot/vmlinuz-6.1.0-1-amd64", "KERNEL", 0o644)
	if err := os.Symlink("busybox", filepath.Join(src, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent/target", filepath.Join(src, "dangling")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "bin/busybox"), filepath.Join(src, "bin/ls")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(filepath.Join(src, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(src, "run-fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(filepath.Join(src, "run-fifo"), 0o620); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	if root {
		if err := os.Lchown(filepath.Join(src, "etc/shadow"), 0, 42); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(filepath.Join(src, "bin/sh"), 7, 8); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(filepath.Join(src, "dev-null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
	}
	xattr := unix.Lsetxattr(filepath.Join(src, "bin/busybox"), "user.ww", []byte("yes"), 0) == nil

	dst := filepath.Join(t.TempDir(), "images", "x", "rootfs")
	if err := CopyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Dir(dst)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("parent directory created as %v (%v)", fi.Mode(), err)
	}
	stat := func(p string) *syscall.Stat_t {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dst, p), &st); err != nil {
			t.Fatal(err)
		}
		return &st
	}
	for p, want := range map[string]uint32{
		"bin/busybox": 0o755, "usr/bin/passwd": 0o4755, "etc/shadow": 0o640, "tmp": 0o1777, "run-fifo": 0o620,
	} {
		if got := stat(p).Mode & 0o7777; got != want {
			t.Errorf("%s: mode %o, want %o", p, got, want)
		}
	}
	if stat("run-fifo").Mode&syscall.S_IFMT != syscall.S_IFIFO {
		t.Error("fifo not a fifo")
	}
	if l, err := os.Readlink(filepath.Join(dst, "bin/sh")); err != nil || l != "busybox" {
		t.Errorf("symlink: %q %v", l, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "dangling")); err != nil || l != "/nonexistent/target" {
		t.Errorf("dangling symlink: %q %v", l, err)
	}
	if a, b := stat("bin/busybox"), stat("bin/ls"); a.Ino != b.Ino {
		t.Error("hard link not kept")
	}
	if data, _ := os.ReadFile(filepath.Join(dst, "boot/vmlinuz-6.1.0-1-amd64")); string(data) != "KERNEL" {
		t.Errorf("content %q", data)
	}
	if s, d := statSrc(t, src, "boot/vmlinuz-6.1.0-1-amd64"), stat("boot/vmlinuz-6.1.0-1-amd64"); s.Mtim != d.Mtim {
		t.Errorf("mtime not kept: %v vs %v", s.Mtim, d.Mtim)
	}
	if s, d := statSrc(t, src, "usr/bin"), stat("usr/bin"); s.Mtim != d.Mtim {
		t.Errorf("directory mtime not kept")
	}
	if root {
		if st := stat("etc/shadow"); st.Uid != 0 || st.Gid != 42 {
			t.Errorf("owner %d:%d", st.Uid, st.Gid)
		}
		if st := stat("bin/sh"); st.Uid != 7 || st.Gid != 8 {
			t.Errorf("symlink owner %d:%d", st.Uid, st.Gid)
		}
		if st := stat("dev-null"); st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("device node %+v", st)
		}
		if stat("usr/bin/passwd").Mode&0o4000 == 0 {
			t.Error("setuid lost after chown")
		}
	}
	if xattr {
		buf := make([]byte, 16)
		n, err := unix.Lgetxattr(filepath.Join(dst, "bin/busybox"), "user.ww", buf)
		if err != nil || string(buf[:n]) != "yes" {
			t.Errorf("xattr not copied: %q %v", buf[:n], err)
		}
	}
}

func statSrc(t *testing.T, root, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(root, p), &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

func TestELFInterpreter(t *testing.T) {
	exe, err := os.Executable() // the test binary
	if err != nil {
		t.Fatal(err)
	}
	_ = elfInterpreter(exe) // static or not, it must not fail
	script := filepath.Join(t.TempDir(), "wwclient")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho fake wwclient\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := elfInterpreter(script); got != "" {
		t.Errorf("a shell script has interpreter %q", got)
	}
	if _, err := os.Stat("/bin/sh"); err == nil {
		if got := elfInterpreter("/bin/sh"); !strings.Contains(got, "ld-") {
			t.Logf("/bin/sh interpreter %q (static shell?)", got)
		}
	}
}
