package artifact

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
)

func TestImageRoundTrip(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	rootfs := filepath.Join(tt.root, "images/debian/rootfs")
	suid := tt.file("images/debian/rootfs/usr/bin/passwd", "suid", 0o755)
	if err := os.Chmod(suid, os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	tt.dir("images/debian/rootfs/tmp", os.ModeSticky|0o777)
	owned := tt.file("images/debian/rootfs/home/user/.profile", "x", 0o640)
	if err := os.Lchown(owned, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(rootfs, "bin/sh"), 0, 42); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := os.Chtimes(owned, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(rootfs, "bin/busybox"), filepath.Join(rootfs, "bin/ls")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(rootfs, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A device node is left out (when the sandbox lets us make one).
	devOK := syscall.Mknod(filepath.Join(rootfs, "null"), syscall.S_IFCHR|0o666, 1<<8|3) == nil

	snap := snapshot(t, testNodesTOML)
	b, reg := newBuilder(t, tt.root)
	a, err := b.Image(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "__IMAGE__.img.gz" || !strings.HasPrefix(a.ETag, `"`) || !strings.HasSuffix(a.ETag, `"`) {
		t.Errorf("name %q etag %q", a.Name, a.ETag)
	}
	ms := members(t, readAll(t, a))
	if len(ms) != 1 {
		t.Fatalf("image has %d gzip members, want 1", len(ms))
	}
	files, _ := listArchives(t, ms[0])

	want := map[string]struct {
		mode     cpio.FileMode
		uid, gid int
		data     string
		link     string
	}{
		"etc/os-release":     {cpio.TypeReg | 0o644, 0, 0, "ID=debian\n", ""},
		"bin/busybox":        {cpio.TypeReg | 0o755, 0, 0, strings.Repeat("busybox!", 1000), ""},
		"bin/ls":             {cpio.TypeReg | 0o755, 0, 0, strings.Repeat("busybox!", 1000), ""},
		"bin/sh":             {cpio.TypeSymlink | 0o777, 0, 42, "", "busybox"},
		"usr/bin/passwd":     {cpio.TypeReg | cpio.ModeSetuid | 0o755, 0, 0, "suid", ""},
		"tmp":                {cpio.TypeDir | cpio.ModeSticky | 0o777, 0, 0, "", ""},
		"home/user/.profile": {cpio.TypeReg | 0o640, 1234, 5678, "x", ""},
		"boot":               {cpio.TypeDir | 0o755, 0, 0, "", ""},
		"fifo":               {cpio.TypeFifo | 0o600, 0, 0, "", ""},
	}
	for name, w := range want {
		f, ok := files[name]
		if !ok {
			t.Errorf("%s missing from image", name)
			continue
		}
		if f.hdr.Mode != w.mode || f.hdr.Uid != w.uid || f.hdr.Guid != w.gid || f.data != w.data || f.hdr.Linkname != w.link {
			t.Errorf("%s: mode %o uid %d gid %d link %q data %.20q; want mode %o uid %d gid %d link %q data %.20q",
				name, f.hdr.Mode, f.hdr.Uid, f.hdr.Guid, f.hdr.Linkname, f.data, w.mode, w.uid, w.gid, w.link, w.data)
		}
		if f.hdr.Links < 1 {
			t.Errorf("%s: nlink %d", name, f.hdr.Links)
		}
	}
	if got := files["home/user/.profile"].hdr.ModTime; !got.Equal(mtime) {
		t.Errorf("mtime %v, want %v", got, mtime)
	}
	for name := range files {
		if strings.HasPrefix(name, "boot/") {
			t.Errorf("%s: /boot contents must not be in the image", name)
		}
		if strings.HasPrefix(name, "/") || strings.HasPrefix(name, "./") || name == "." {
			t.Errorf("bad entry name %q", name)
		}
	}
	if _, ok := files["null"]; ok && devOK {
		t.Error("device node in image")
	}

	// Same image for every node: shared, built once.
	a2, err := b.Image(bg, snap, snap.Nodes.ByName["n002"])
	if err != nil {
		t.Fatal(err)
	}
	if a2.ETag != a.ETag || a2.Parts[0] != a.Parts[0] {
		t.Error("two nodes of one image got different image files")
	}
	if n := counter(t, reg, "wwserver_build_builds_total", "image"); n != 1 {
		t.Errorf("image built %v times, want 1", n)
	}
	if !strings.HasPrefix(a.Parts[0], filepath.Join(tt.root, "state", "images")+"/") {
		t.Errorf("image cached at %s", a.Parts[0])
	}

	// Never stale: a changed file gives a new image.
	tt.file("images/debian/rootfs/etc/os-release", "ID=debian2\n", 0o644)
	a3, err := b.Image(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	if a3.ETag == a.ETag {
		t.Fatal("image not rebuilt after a change")
	}
	if got := unpack(t, a3)["etc/os-release"].data; got != "ID=debian2\n" {
		t.Errorf("new image has %q", got)
	}
	// A kernel change in /boot does not rebuild the image.
	tt.file("images/debian/rootfs/boot/vmlinuz-6.1.0-30-amd64", "kernel 30", 0o644)
	a4, err := b.Image(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	if a4.ETag != a3.ETag {
		t.Error("a new file in /boot rebuilt the image")
	}
}

// TestImageWithSystemTools checks the image with gzip(1) and cpio(1), as an
// admin would.
func TestImageWithSystemTools(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("no cpio(1)")
	}
	tt := newTree(t)
	tt.standard()
	snap := snapshot(t, testNodesTOML)
	b, _ := newBuilder(t, tt.root)
	a, err := b.SystemOverlay(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	// gzip -dc decompresses all members; GNU cpio stops at the first
	// TRAILER, so unpack the archives one by one with the kernel's rule in
	// mind: extract into one directory, later archives win.
	var script []string
	for _, p := range a.Parts {
		script = append(script, "gzip -dc "+p+" | cpio -t --quiet")
	}
	out, err := exec.Command("sh", "-c", strings.Join(script, " && ")).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, f := range []string{"usr/sbin/wwclient", "init", "etc/motd", "etc/hosts", "etc/wwclient/wwclient.toml"} {
		if !strings.Contains("\n"+string(out), "\n"+f+"\n") {
			t.Errorf("cpio -t does not list %s:\n%s", f, out)
		}
	}
	// gzip -t accepts the whole file (all members).
	if out, err := exec.Command("sh", "-c", "cat "+strings.Join(a.Parts, " ")+" | gzip -t").CombinedOutput(); err != nil {
		t.Errorf("gzip -t: %v %s", err, out)
	}
}

// TestKernelHandedOver: Kernel (the request's) opens the file once and
// hands it to the first Open; a later Open opens it again; kernel (lookups
// that only want to know about the kernel) leaves nothing open.
func TestKernelHandedOver(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	snap := snapshot(t, testNodesTOML)
	b, _ := newBuilder(t, tt.root)
	n := snap.Nodes.ByName["n001"]
	a, err := b.Kernel(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	first := a.opened.Load()
	if first == nil {
		t.Fatal("Kernel did not hand its open file over")
	}
	for i := range 2 {
		f, err := a.Open()
		if err != nil {
			t.Fatal(err)
		}
		if (i == 0) != (f == io.ReadSeekCloser(first)) {
			t.Errorf("Open %d: handed-over file used: %v, want %v", i, f == io.ReadSeekCloser(first), i == 0)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil || string(got) != "kernel 28" {
			t.Errorf("Open %d: %q (%v), want the kernel", i, got, err)
		}
	}
	meta, err := b.kernel(n)
	if err != nil {
		t.Fatal(err)
	}
	if f := meta.opened.Load(); f != nil {
		f.Close()
		t.Error("kernel (no request) left the kernel file open")
	}
}

func TestKernel(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	tt.file("images/debian/rootfs/boot/vmlinuz-5.10.0-30-amd64", "kernel 5.10", 0o644)
	tt.file("images/debian/rootfs/boot/config-6.1.0-99-amd64", "not a kernel", 0o644)
	snap := snapshot(t, testNodesTOML)
	b, _ := newBuilder(t, tt.root)
	n := *snap.Nodes.ByName["n001"]

	a, err := b.Kernel(bg, snap, &n)
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "vmlinuz-6.1.0-28-amd64" || string(readAll(t, a)) != "kernel 28" {
		t.Fatalf("chose %s", a.Name)
	}
	if want := filepath.Join(tt.root, "images/debian/rootfs/boot/vmlinuz-6.1.0-28-amd64"); a.Parts[0] != want {
		t.Errorf("kernel served from %s, want the image tree file %s", a.Parts[0], want)
	}

	// An explicit kernel wins.
	n.Kernel = "boot/vmlinuz-6.1.0-9-amd64"
	a9, err := b.Kernel(bg, snap, &n)
	if err != nil {
		t.Fatal(err)
	}
	if a9.Name != "vmlinuz-6.1.0-9-amd64" || string(readAll(t, a9)) != "kernel 9" || a9.ETag == a.ETag {
		t.Errorf("explicit kernel: %s %s", a9.Name, a9.ETag)
	}

	// A symlink is resolved inside the rootfs; absolute targets as in a chroot.
	tt.symlink("images/debian/rootfs/vmlinuz", "/boot/vmlinuz-6.1.0-9-amd64")
	n.Kernel = "vmlinuz"
	al, err := b.Kernel(bg, snap, &n)
	if err != nil {
		t.Fatal(err)
	}
	if string(readAll(t, al)) != "kernel 9" {
		t.Error("kernel symlink not resolved inside the rootfs")
	}

	// A replaced kernel: the old Artifact refuses to serve, a new call sees it.
	tt.file("images/debian/rootfs/boot/vmlinuz-6.1.0-9-amd64", "kernel 9, rebuilt", 0o644)
	if r, err := al.Open(); err == nil {
		r.Close()
		t.Error("stale kernel artifact opened")
	}
	al2, err := b.Kernel(bg, snap, &n)
	if err != nil || string(readAll(t, al2)) != "kernel 9, rebuilt" || al2.ETag == al.ETag {
		t.Errorf("replaced kernel: %v", err)
	}

	// Missing kernels are ErrNotFound with a message that says what.
	n.Kernel = "boot/nope"
	if _, err := b.Kernel(bg, snap, &n); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "boot/nope") {
		t.Errorf("missing explicit kernel: %v", err)
	}
	n.Kernel = ""
	for _, k := range []string{"vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-28-amd64", "vmlinuz-5.10.0-30-amd64", "vmlinuz-6.1.0-30-amd64"} {
		os.Remove(filepath.Join(tt.root, "images/debian/rootfs/boot", k))
	}
	_, err = b.Kernel(bg, snap, &n)
	if !errors.Is(err, ErrNotFound) || err.Error() != `image "debian": no rootfs/boot/vmlinuz-*` {
		t.Errorf("no kernel: %v", err)
	}
	n.Image = "nope"
	if _, err := b.Kernel(bg, snap, &n); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `image "nope"`) {
		t.Errorf("no image: %v", err)
	}
	n.Image = "../debian"
	if _, err := b.Kernel(bg, snap, &n); !errors.Is(err, ErrInvalidName) {
		t.Errorf("bad image name: %v", err)
	}
}

func TestVersionLess(t *testing.T) {
	ordered := []string{
		"vmlinuz-5.10.0-30-amd64",
		"vmlinuz-6.1.0-rc1-amd64",
		"vmlinuz-6.1.0-9-amd64",
		"vmlinuz-6.1.0-28-amd64",
		"vmlinuz-6.1.0-28-rt-amd64",
		"vmlinuz-6.1.0-100-amd64",
		"vmlinuz-6.10.0-1-amd64",
	}
	for i := range ordered {
		for j := range ordered {
			if got := versionLess(ordered[i], ordered[j]); got != (i < j) {
				t.Errorf("versionLess(%s, %s) = %v", ordered[i], ordered[j], got)
			}
		}
	}
}

func TestTemplates(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	snap := snapshot(t, testNodesTOML)
	b, _ := newBuilder(t, tt.root)
	n1 := snap.Nodes.ByName["n001"]

	sys, err := b.SystemOverlay(bg, snap, n1)
	if err != nil {
		t.Fatal(err)
	}
	files := unpack(t, sys)
	if got, want := files["etc/wwclient/wwclient.toml"].data, `node = "n001"
server = "10.0.2.1:9873"
update_interval = 30
secure = true
asset_key = "secret1"
`; got != want {
		t.Errorf("wwclient.toml:\n%s\nwant:\n%s", got, want)
	}
	if f := files["etc/wwclient/wwclient.toml"]; f.hdr.Mode != cpio.TypeReg|0o600 {
		t.Errorf("rendered file mode %o, want the template's 0600", f.hdr.Mode)
	}
	if got, want := files["etc/hosts"].data, "127.0.0.1 localhost\n10.0.2.11 n001\n10.0.2.12 n002\n"; got != want {
		t.Errorf("hosts %q, want %q", got, want)
	}
	if _, ok := files["etc/hosts.ww"]; ok {
		t.Error("template source in overlay")
	}

	rt, err := b.RuntimeOverlay(bg, snap, snap.Nodes.ByName["n002"])
	if err != nil {
		t.Fatal(err)
	}
	// generic: plain files, then the node's member (issue.ww uses .Node).
	if rt.Name != "__RUNTIME__.img.gz" || len(rt.Parts) != 2 || len(members(t, readAll(t, rt))) != 2 {
		t.Fatalf("runtime overlay: %d parts, want 2 gzip members", len(rt.Parts))
	}
	if got, want := unpack(t, rt)["etc/issue"].data, "N002 rack=r2 args=console=ttyS0,quiet prefix=16 abc\n"; got != want {
		t.Errorf("issue %q, want %q", got, want)
	}

	var buf bytes.Buffer
	if err := b.RenderOverlay(snap, n1, "generic", &buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"-rw-r--r-- 0:0",
		"etc/issue (template etc/issue.ww)\n--- etc/issue\nN001 rack=r1 args=console=ttyS0,quiet prefix=24 abc\n--- end etc/issue\n",
		"etc/static\n",
		"drwxr-xr-x 0:0",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("RenderOverlay output lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	if err := b.RenderOverlay(snap, n1, "wwinit", &buf); err != nil || !strings.Contains(buf.String(), "init -> usr/sbin/wwclient") {
		t.Errorf("RenderOverlay wwinit: %v\n%s", err, buf.String())
	}
	if err := b.RenderOverlay(snap, n1, "nope", &buf); !errors.Is(err, ErrNotFound) {
		t.Errorf("RenderOverlay of a missing overlay: %v", err)
	}
}

func TestTemplateErrors(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	snap := snapshot(t, testNodesTOML)
	b, reg := newBuilder(t, tt.root)
	n := snap.Nodes.ByName["n002"]

	for _, c := range []struct{ src, want string }{
		{"line1\n{{.Node.Tags.nope}}\n", `overlays/generic/etc/bad.ww:2:7: executing "overlays/generic/etc/bad.ww" at <.Node.Tags.nope>: map has no entry for key "nope"`},
		{"ok\nok\n{{if .Node.Name}}", `overlays/generic/etc/bad.ww:3: unexpected EOF`},
		{"{{.Node.Nmae}}", `overlays/generic/etc/bad.ww:1:7: executing "overlays/generic/etc/bad.ww" at <.Node.Nmae>: can't evaluate field Nmae`},
		{"{{nofunc 1}}", `overlays/generic/etc/bad.ww:1: function "nofunc" not defined`},
		{"{{join .Node.Name 1}}", `wrong type for value`},
		{"{{.Node.Primary.Nope}}", `can't evaluate field Nope`},
	} {
		tt.file("overlays/generic/etc/bad.ww", c.src, 0o644)
		_, err := b.RuntimeOverlay(bg, snap, n)
		if err == nil {
			t.Errorf("%q: no error", c.src)
			continue
		}
		if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `node "n002"`) {
			t.Errorf("%q:\n got %v\nwant ErrTemplate containing %q", c.src, err, c.want)
		}
		var buf bytes.Buffer
		if err := b.RenderOverlay(snap, n, "generic", &buf); !errors.Is(err, ErrTemplate) {
			t.Errorf("RenderOverlay: %v", err)
		}
		// The other files are still listed.
		if !strings.Contains(buf.String(), "etc/issue (template") {
			t.Errorf("RenderOverlay stopped at the error:\n%s", buf.String())
		}
	}
	if counter(t, reg, "wwserver_build_errors_total", "runtime") == 0 {
		t.Error("errors not counted")
	}
	// Nothing broken is left in the cache.
	for _, k := range kinds {
		ents, _ := os.ReadDir(filepath.Join(tt.root, "state", k.dir))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), tmpPrefix) {
				t.Errorf("temporary file left: %s/%s", k.dir, e.Name())
			}
		}
	}
}

// TestOverlayMembers: an overlay is up to three gzip members, each a cpio
// archive: the plain files and the rendered node-independent templates, both
// shared by every node, then the node's own templates; "gzip -dc | cpio -t"
// lists every file.
func TestOverlayMembers(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	snap := snapshot(t, testNodesTOML)
	b, _ := newBuilder(t, tt.root)
	a1, err := b.SystemOverlay(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	a2, err := b.SystemOverlay(bg, snap, snap.Nodes.ByName["n002"])
	if err != nil {
		t.Fatal(err)
	}
	if a1.Name != "__SYSTEM__.img.gz" || len(a1.Parts) != 3 {
		t.Fatalf("%s: %d parts", a1.Name, len(a1.Parts))
	}
	if a1.Parts[0] != a2.Parts[0] || a1.Parts[1] != a2.Parts[1] || a1.Parts[2] == a2.Parts[2] || a1.ETag == a2.ETag {
		t.Errorf("files and rendered members must be shared, node member and ETag per node:\n%v\n%v", a1.Parts, a2.Parts)
	}
	data := readAll(t, a1)
	ms := members(t, data)
	if len(ms) != 3 {
		t.Fatalf("%d members, want 3", len(ms))
	}
	files, _ := listArchives(t, ms[0])
	rendered, _ := listArchives(t, ms[1])
	node, _ := listArchives(t, ms[2])
	for _, f := range []string{"usr", "usr/sbin", "usr/sbin/wwclient", "init", "etc", "etc/motd", "etc/wwclient"} {
		if _, ok := files[f]; !ok {
			t.Errorf("files member lacks %s", f)
		}
	}
	if len(files) != 7 {
		t.Errorf("files member holds %d entries, want 7", len(files))
	}
	if len(rendered) != 1 || rendered["etc/hosts"].data != "127.0.0.1 localhost\n10.0.2.11 n001\n10.0.2.12 n002\n" {
		t.Errorf("rendered member: %v", rendered)
	}
	if len(node) != 1 || !strings.Contains(node["etc/wwclient/wwclient.toml"].data, `node = "n001"`) {
		t.Errorf("node member: %v", node)
	}

	// "gzip -dc | cpio -t" for concatenated archives, in Go.
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(zr) // multistream is the default
	if err != nil {
		t.Fatal(err)
	}
	got, order := listArchives(t, all)
	if len(got) != len(files)+len(rendered)+len(node) {
		t.Errorf("listed %d files, want %d: %v", len(got), len(files)+len(rendered)+len(node), order)
	}
	if got["init"].hdr.Linkname != "usr/sbin/wwclient" || got["usr/sbin/wwclient"].hdr.Mode != cpio.TypeReg|0o755 {
		t.Error("symlink or mode lost")
	}

	// The runtime overlay the same way: generic has plain files and a
	// per-node template, no node-independent one.
	r1, err := b.RuntimeOverlay(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	r2, err := b.RuntimeOverlay(bg, snap, snap.Nodes.ByName["n002"])
	if err != nil {
		t.Fatal(err)
	}
	if len(r1.Parts) != 2 || r1.Parts[0] != r2.Parts[0] || r1.Parts[1] == r2.Parts[1] {
		t.Errorf("runtime parts:\n%v\n%v", r1.Parts, r2.Parts)
	}

	// Without per-node templates: no node member; without any template:
	// the files member alone.
	os.Remove(filepath.Join(tt.root, "overlays/wwinit/etc/wwclient/wwclient.toml.ww"))
	a3, err := b.SystemOverlay(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	a4, err := b.SystemOverlay(bg, snap, snap.Nodes.ByName["n002"])
	if err != nil {
		t.Fatal(err)
	}
	if len(a3.Parts) != 2 || a3.ETag != a4.ETag {
		t.Errorf("node-independent templates only: %d parts, ETags %s %s", len(a3.Parts), a3.ETag, a4.ETag)
	}
	os.Remove(filepath.Join(tt.root, "overlays/wwinit/etc/hosts.ww"))
	a5, err := b.SystemOverlay(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	if len(a5.Parts) != 1 || len(members(t, readAll(t, a5))) != 1 {
		t.Errorf("no templates: %d parts", len(a5.Parts))
	}
	// An overlay with nothing in it still gives one (empty) archive.
	tt.dir("overlays/empty", 0o755)
	snapEmpty := snapshot(t, strings.Replace(testNodesTOML, `runtime_overlays = ["generic"]`, `runtime_overlays = ["empty"]`, 1))
	e, err := b.RuntimeOverlay(bg, snapEmpty, snapEmpty.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	if ms := members(t, readAll(t, e)); len(ms) != 1 {
		t.Errorf("empty overlay: %d members", len(ms))
	}
}

// TestMerge: later overlays win per path; a template provides its output path.
func TestMerge(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	tt.file("overlays/a/etc/x", "a", 0o644)
	tt.file("overlays/a/etc/y.ww", "a-template {{.Node.Name}}", 0o644)
	tt.file("overlays/a/etc/z.ww", "a-template", 0o644)
	tt.file("overlays/a/opt/dir/file", "cut off", 0o644)
	tt.file("overlays/a/same", "plain", 0o644)
	tt.file("overlays/a/same.ww", "template wins in one overlay", 0o644)
	tt.file("overlays/b/etc/x", "b", 0o600)
	tt.file("overlays/b/etc/y", "b-plain", 0o644)
	tt.file("overlays/b/etc/z.ww", "b-template {{.Node.Name}}", 0o644)
	tt.symlink("overlays/b/opt/dir", "/elsewhere")
	nodes := strings.Replace(testNodesTOML, `system_overlays = ["wwinit"]`, `system_overlays = ["a", "b"]`, 1)
	snap := snapshot(t, nodes)
	b, _ := newBuilder(t, tt.root)
	a, err := b.SystemOverlay(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	files := unpack(t, a)
	for name, want := range map[string]string{
		"etc/x": "b", "etc/y": "b-plain", "etc/z": "b-template n001", "same": "template wins in one overlay",
	} {
		if got := files[name].data; got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if files["etc/x"].hdr.Mode != cpio.TypeReg|0o600 {
		t.Error("etc/x: mode not from the winning overlay")
	}
	if files["opt/dir"].hdr.Linkname != "/elsewhere" {
		t.Error("opt/dir symlink lost")
	}
	if _, ok := files["opt/dir/file"]; ok {
		t.Error("a file below a path replaced by a symlink survived")
	}
	// Each path once, across both members.
	var all []byte
	for _, m := range members(t, readAll(t, a)) {
		all = append(all, m...)
	}
	if _, order := listArchives(t, all); len(order) != len(files) {
		t.Errorf("duplicate paths: %v", order)
	}
}

// TestNeverStale: edits to overlay files and to nodes.toml are served by the
// next call; a nodes.toml change only changes the per-node part.
func TestNeverStale(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	snap := snapshot(t, testNodesTOML)
	b, reg := newBuilder(t, tt.root)
	n := snap.Nodes.ByName["n001"]
	a1, err := b.SystemOverlay(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	// Same inputs: same artifact, no build.
	again, err := b.SystemOverlay(bg, snap, n)
	if err != nil || again.ETag != a1.ETag {
		t.Fatal("unchanged inputs gave a new artifact")
	}
	builds := counter(t, reg, "wwserver_build_builds_total", "overlay_files") +
		counter(t, reg, "wwserver_build_builds_total", "overlay_rendered") +
		counter(t, reg, "wwserver_build_builds_total", "overlay_node")
	if builds != 3 {
		t.Errorf("%v builds, want 3", builds)
	}

	// Edit a plain file with the same size and the same mtime: still seen
	// (ctime/inode are in the fingerprint).
	motd := filepath.Join(tt.root, "overlays/wwinit/etc/motd")
	fi, _ := os.Stat(motd)
	tt.file("overlays/wwinit/etc/motd", "WELCOME\n", 0o644)
	os.Chtimes(motd, fi.ModTime(), fi.ModTime())
	a2, err := b.SystemOverlay(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	if a2.ETag == a1.ETag || a2.Parts[0] == a1.Parts[0] {
		t.Fatal("plain file edit not seen")
	}
	if got := unpack(t, a2)["etc/motd"].data; got != "WELCOME\n" {
		t.Errorf("motd %q", got)
	}

	// Edit a template.
	tt.file("overlays/wwinit/etc/hosts.ww", "# hosts of {{.Node.Name}}\n", 0o644)
	a3, err := b.SystemOverlay(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	if a3.ETag == a2.ETag {
		t.Fatal("template edit not seen")
	}
	if got := unpack(t, a3)["etc/hosts"].data; got != "# hosts of n001\n" {
		t.Errorf("hosts %q", got)
	}
	// A new file, a removed file, a chmod.
	tt.file("overlays/wwinit/etc/new", "new\n", 0o644)
	a4, _ := b.SystemOverlay(bg, snap, n)
	os.Remove(filepath.Join(tt.root, "overlays/wwinit/etc/new"))
	a5, _ := b.SystemOverlay(bg, snap, n)
	os.Chmod(motd, 0o600)
	a6, _ := b.SystemOverlay(bg, snap, n)
	if a4.ETag == a3.ETag || a5.ETag == a4.ETag || a6.ETag == a5.ETag {
		t.Error("add/remove/chmod not seen")
	}
	if _, ok := unpack(t, a5)["etc/new"]; ok {
		t.Error("removed file still served")
	}

	// nodes.toml change (n002's address): the shared part stays, n001's
	// per-node part changes (its hosts file lists n002).
	snap2 := snapshot(t, strings.Replace(testNodesTOML, "10.0.2.12", "10.0.2.99", 1))
	tt.file("overlays/wwinit/etc/hosts.ww", "{{range .Nodes}}{{.Primary.IPAddr}} {{.Name}}\n{{end}}", 0o644)
	b1, _ := b.SystemOverlay(bg, snap, n)
	b2, err := b.SystemOverlay(bg, snap2, snap2.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	if b1.Parts[0] != b2.Parts[0] {
		t.Error("nodes.toml change rebuilt the shared part")
	}
	if b1.Parts[1] == b2.Parts[1] || b1.ETag == b2.ETag {
		t.Error("nodes.toml change did not change the per-node part")
	}
	if got := unpack(t, b2)["etc/hosts"].data; !strings.Contains(got, "10.0.2.99 n002") {
		t.Errorf("hosts %q", got)
	}
	// The image does not depend on nodes.toml.
	i1, _ := b.Image(bg, snap, n)
	i2, _ := b.Image(bg, snap2, snap2.Nodes.ByName["n001"])
	if i1.ETag != i2.ETag {
		t.Error("image depends on nodes.toml")
	}
	// Server settings are template inputs too.
	snap3 := snapshot(t, testNodesTOML)
	snap3.Server.Address = "10.0.2.254"
	b3, _ := b.SystemOverlay(bg, snap3, snap3.Nodes.ByName["n001"])
	if b3.ETag == b1.ETag {
		t.Error("server address change not seen")
	}
}

func TestOverlayNames(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	b, _ := newBuilder(t, tt.root)
	snap := snapshot(t, testNodesTOML)
	n := *snap.Nodes.ByName["n001"]
	n.SystemOverlays = []string{"wwinit", "foo"}
	_, err := b.SystemOverlay(bg, snap, &n)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `overlay "foo" does not exist`) {
		t.Errorf("missing overlay: %v", err)
	}
	n.RuntimeOverlays = []string{"../../etc"}
	if _, err := b.RuntimeOverlay(bg, snap, &n); !errors.Is(err, ErrInvalidName) {
		t.Errorf("bad overlay name: %v", err)
	}
	// No overlays: an empty archive.
	n.RuntimeOverlays = nil
	a, err := b.RuntimeOverlay(bg, snap, &n)
	if err != nil {
		t.Fatal(err)
	}
	if files := unpack(t, a); len(files) != 0 {
		t.Errorf("empty overlay list gave %v", files)
	}
}

// TestImageParallelCompression: an image spanning many compression blocks
// (compressed on every core) is one ordinary gzip member that gzip(1) reads
// back byte for byte.
func TestImageParallelCompression(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	var big strings.Builder
	for i := 0; big.Len() < 5*parallelBlock+12345; i++ {
		fmt.Fprintf(&big, "line %d %x\n", i, i*2654435761)
	}
	tt.file("images/debian/rootfs/usr/share/big", big.String(), 0o644)
	snap := snapshot(t, testNodesTOML)
	b, _ := newBuilder(t, tt.root)
	a, err := b.Image(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	data := readAll(t, a)
	if ms := members(t, data); len(ms) != 1 {
		t.Fatalf("%d gzip members, want 1", len(ms))
	}
	if got := unpack(t, a)["usr/share/big"].data; got != big.String() {
		t.Fatalf("big file: %d bytes back of %d", len(got), big.Len())
	}
	cmd := exec.Command("gzip", "-dc")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gzip -dc: %v", err)
	}
	if !bytes.Contains(out, []byte(big.String())) {
		t.Fatal("gzip -dc output does not hold the file")
	}
}
