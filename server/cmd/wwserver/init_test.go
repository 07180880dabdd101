package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/wwcluster/ww/server/config"
)

func fakeWWClient(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "wwclient")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho fake wwclient\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInitPlaceholder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tree")
	var out bytes.Buffer
	code := run([]string{"init", dir, "--wwclient", fakeWWClient(t), "--address", "10.9.8.1"}, &out, &out)
	if code != 0 {
		t.Fatalf("init failed: %s", out.String())
	}
	if !strings.Contains(out.String(), "placeholder") {
		t.Errorf("no placeholder note:\n%s", out.String())
	}
	srv, err := config.LoadServer(filepath.Join(dir, config.ServerFile))
	if err != nil {
		t.Fatal(err)
	}
	if srv.Address != "10.9.8.1" || !srv.IsSecure() || srv.DHCP.Enabled || srv.TFTP.Enabled {
		t.Errorf("server config %+v", srv)
	}
	nodes, err := config.LoadNodes(filepath.Join(dir, config.NodesFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.List) != 2 || nodes.ByName["n001"].Primary().IPAddr != "10.9.8.11" || nodes.ByName["n002"].Image != initImage {
		t.Errorf("nodes %+v", nodes.List)
	}
	for _, p := range []string{
		"overlays/wwinit", "overlays/generic", "overlays/wwinit/usr/sbin/wwclient",
		"images/default/rootfs/boot/vmlinuz-0-placeholder", "images/default/rootfs/README", "ipxe/README",
	} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("missing %s: %v", p, err)
		}
	}
	fi, _ := os.Stat(filepath.Join(dir, "overlays/wwinit/usr/sbin/wwclient"))
	if fi == nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("wwclient mode %v", fi)
	}
	k, _ := os.ReadFile(filepath.Join(dir, "images/default/rootfs/boot/vmlinuz-0-placeholder"))
	if !strings.Contains(string(k), "REPLACE ME") {
		t.Errorf("placeholder kernel %q", k)
	}
	// Every key of wwserver.toml is written and commented.
	text, _ := os.ReadFile(filepath.Join(dir, config.ServerFile))
	for _, key := range []string{"address", "listen", "update_interval", "secure", "source_check", "[dhcp]", "mode", "interface",
		"range_start", "range_end", "netmask", "router", "dns", "domain", "lease_time", "bios_file", "efi_file",
		"arm64_file", "http_boot_file", "workers", "[tftp]", "dir", "anticipate"} {
		if !strings.Contains(string(text), "\n"+key) {
			t.Errorf("wwserver.toml lacks %s", key)
		}
	}
	// The placeholder image does not boot, and check says so (one line for
	// both nodes); nothing else is wrong.
	problems := checkTree(dir)
	if len(problems) != 1 {
		t.Errorf("check of a fresh tree: %d problems, want the placeholder only: %q", len(problems), problems)
	}
	for _, want := range []string{"nodes.toml: nodes.n001.kernel:", `image "default" is the placeholder wwserver init wrote and will not boot`,
		"boot/vmlinuz-0-placeholder is not a Linux kernel", "images/default/rootfs", "(2 nodes: n[001-002])"} {
		if len(problems) == 0 || !strings.Contains(problems[0], want) {
			t.Errorf("check of a fresh tree lacks %q: %q", want, problems)
		}
	}
	var checkOut bytes.Buffer
	if code := run([]string{"check", dir}, &checkOut, &checkOut); code != 1 || strings.Contains(checkOut.String(), "ok\n") {
		t.Errorf("wwserver check of a fresh tree: exit %d:\n%s", code, checkOut.String())
	}
	replacePlaceholderKernel(t, dir)
	if problems := checkTree(dir); len(problems) != 0 {
		t.Errorf("check with a kernel in place of the placeholder: %q", problems)
	}

	// Not empty now: refused without --force, allowed with it.
	out.Reset()
	if code := run([]string{"init", dir, "--wwclient", fakeWWClient(t), "--address", "10.9.8.1"}, &out, &out); code == 0 {
		t.Error("init into a non-empty dir succeeded")
	} else if !strings.Contains(out.String(), "--force") {
		t.Errorf("refusal does not mention --force: %s", out.String())
	}
	if code := run([]string{"init", dir, "--force", "--wwclient", fakeWWClient(t), "--address", "10.9.8.1"}, &out, &out); code != 0 {
		t.Errorf("init --force failed: %s", out.String())
	}
}

func TestInitErrors(t *testing.T) {
	var out bytes.Buffer
	dir := filepath.Join(t.TempDir(), "tree")
	if code := run([]string{"init", dir, "--wwclient", "/nonexistent/wwclient", "--address", "10.0.0.1"}, &out, &out); code == 0 {
		t.Error("init with a missing wwclient succeeded")
	}
	if !strings.Contains(out.String(), "--wwclient") {
		t.Errorf("error does not say what to do: %s", out.String())
	}
	out.Reset()
	if code := run([]string{"init", dir, "--wwclient", fakeWWClient(t), "--address", "nope"}, &out, &out); code == 0 {
		t.Error("bad --address accepted")
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("a failed init wrote files")
	}
	out.Reset()
	if code := run([]string{"init", dir, "--wwclient", fakeWWClient(t), "--address", "10.0.0.1", "--image-from", "/nonexistent"}, &out, &out); code == 0 {
		t.Error("bad --image-from accepted")
	}
}

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
	if err := copyTree(src, dst); err != nil {
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
	if got := elfInterpreter(fakeWWClient(t)); got != "" {
		t.Errorf("a shell script has interpreter %q", got)
	}
	if _, err := os.Stat("/bin/sh"); err == nil {
		if got := elfInterpreter("/bin/sh"); !strings.Contains(got, "ld-") {
			t.Logf("/bin/sh interpreter %q (static shell?)", got)
		}
	}
}
