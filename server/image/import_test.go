package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// entry is one tar entry of a test layer.
type entry struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
	major, minor     int64
	xattrs           map[string]string
}

func tarBytes(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, Linkname: e.link,
			Devmajor: e.major, Devminor: e.minor, ModTime: mt, Size: int64(len(e.body)), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// capNetRaw is a VFS_CAP_REVISION_2 security.capability value: cap_net_raw+ep.
var capNetRaw = string([]byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})

// The base layer has one of everything; the top layer deletes, replaces
// and hides things with whiteouts.
func testLayers(t testing.TB) [][]byte {
	base := []entry{
		{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "etc/passwd", body: "root:x:0:0::/root:/bin/sh\n"},
		{name: "etc/hostname", body: "img\n", xattrs: map[string]string{"security.selinux": "system_u:object_r:etc_t:s0"}},
		{name: "bin/busybox", body: "#!busybox", mode: 0o755},
		{name: "bin/sh", typ: tar.TypeSymlink, link: "busybox"},
		{name: "bin/ping", body: "ping", mode: 0o755, xattrs: map[string]string{"security.capability": capNetRaw, "user.origin": "test"}},
		{name: "bin/ping6", typ: tar.TypeLink, link: "bin/ping"},
		{name: "usr/bin/su", body: "su", mode: 0o4755, uid: 0, gid: 0},
		{name: "home/user/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000},
		{name: "home/user/notes", body: "n", mode: 0o600, uid: 1000, gid: 1000},
		{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		{name: "dev/loop0", typ: tar.TypeBlock, mode: 0o660, major: 7, minor: 0, gid: 6},
		{name: "run/initctl", typ: tar.TypeFifo, mode: 0o600},
		{name: "opt/old/a", body: "a"},
		{name: "opt/old/sub/b", body: "b"},
		{name: "var/run", typ: tar.TypeSymlink, link: "/run"},
		{name: "boot/vmlinuz-6.1.0-test", body: "kernel"},
		{name: "lib/link-target", body: "x"},
		{name: "lib/replaced", typ: tar.TypeSymlink, link: "/etc/shadow"},
	}
	top := []entry{
		{name: "etc/.wh.passwd"},
		{name: "opt/old/.wh..wh..opq"},
		{name: "opt/old/new", body: "new"},
		{name: "lib/replaced", body: "now a file"}, // replaces the symlink, never writes through it
		{name: "./etc/motd", body: "hello"},
	}
	return [][]byte{tarBytes(t, base), tarBytes(t, top)}
}

func testImage(t testing.TB, layers [][]byte) v1.Image {
	t.Helper()
	img := empty.Image
	for _, data := range layers {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

func writeLayout(t testing.TB, dir string, img v1.Image) {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"})); err != nil {
		t.Fatal(err)
	}
}

// tarDir packs dir as "./…" entries, as `tar -C dir -cf - .` would.
func tarDir(t testing.TB, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = "./" + rel
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			tw.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func checkRootfs(t *testing.T, rootfs string, flattened bool) {
	t.Helper()
	st := func(p string) *syscall.Stat_t {
		t.Helper()
		var s syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(rootfs, p), &s); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return &s
	}
	xattr := func(p, k string) string {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(filepath.Join(rootfs, p), k, buf)
		if err != nil {
			t.Errorf("%s: xattr %s: %v", p, k, err)
			return ""
		}
		return string(buf[:n])
	}
	if s := st("usr/bin/su"); s.Mode&0o7777 != 0o4755 {
		t.Errorf("su mode %o, want 4755", s.Mode&0o7777)
	}
	if s := st("home/user"); s.Uid != 1000 || s.Gid != 1000 || s.Mode&0o777 != 0o700 {
		t.Errorf("home/user: uid %d gid %d mode %o", s.Uid, s.Gid, s.Mode&0o777)
	}
	if s := st("dev/null"); s.Mode&syscall.S_IFMT != syscall.S_IFCHR || unix.Major(s.Rdev) != 1 || unix.Minor(s.Rdev) != 3 {
		t.Errorf("dev/null: mode %o rdev %d", s.Mode, s.Rdev)
	}
	if s := st("dev/loop0"); s.Mode&syscall.S_IFMT != syscall.S_IFBLK || s.Gid != 6 {
		t.Errorf("dev/loop0: mode %o gid %d", s.Mode, s.Gid)
	}
	if s := st("run/initctl"); s.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		t.Errorf("run/initctl is not a FIFO")
	}
	if l, _ := os.Readlink(filepath.Join(rootfs, "bin/sh")); l != "busybox" {
		t.Errorf("bin/sh -> %q", l)
	}
	if l, _ := os.Readlink(filepath.Join(rootfs, "var/run")); l != "/run" {
		t.Errorf("var/run -> %q", l)
	}
	if st("bin/ping").Ino != st("bin/ping6").Ino {
		t.Errorf("bin/ping6 is not a hard link of bin/ping")
	}
	if got := xattr("bin/ping", "security.capability"); got != capNetRaw {
		t.Errorf("bin/ping capability %x", got)
	}
	if got := xattr("bin/ping", "user.origin"); got != "test" {
		t.Errorf("bin/ping user.origin %q", got)
	}
	if got := strings.TrimRight(xattr("etc/hostname", "security.selinux"), "\x00"); got != "system_u:object_r:etc_t:s0" {
		t.Errorf("etc/hostname security.selinux %q", got)
	}
	if mt := st("etc/hostname").Mtim; mt.Sec != time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC).Unix() {
		t.Errorf("mtime not kept: %v", mt)
	}
	if !flattened {
		return
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "etc/passwd")); !os.IsNotExist(err) {
		t.Errorf("whiteout: etc/passwd still there (%v)", err)
	}
	for p, want := range map[string]bool{"opt/old/a": false, "opt/old/sub": false, "opt/old/new": true, "etc/motd": true} {
		_, err := os.Lstat(filepath.Join(rootfs, p))
		if (err == nil) != want {
			t.Errorf("%s: exists=%v, want %v", p, err == nil, want)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(rootfs, "lib/replaced")); string(data) != "now a file" || st("lib/replaced").Mode&syscall.S_IFMT != syscall.S_IFREG {
		t.Errorf("lib/replaced: %q", data)
	}
}

func importInto(t *testing.T, tree, name, src string) (*Meta, error) {
	t.Helper()
	var out bytes.Buffer
	m, err := Import(context.Background(), Options{Tree: tree, Name: name, Source: src, Progress: &out})
	if err == nil && !strings.Contains(out.String(), "layer(s)") {
		t.Errorf("no progress output: %q", out.String())
	}
	return m, err
}

func TestImportSources(t *testing.T) {
	img := testImage(t, testLayers(t))
	work := t.TempDir()

	ociDir := filepath.Join(work, "oci")
	writeLayout(t, ociDir, img)
	ociTar := filepath.Join(work, "oci.tar")
	tarDir(t, ociDir, ociTar)
	dockerTar := filepath.Join(work, "docker.tar")
	ref, _ := name.NewTag("example.org/node:1")
	if err := tarball.WriteToFile(dockerTar, ref, img); err != nil {
		t.Fatal(err)
	}
	dockerTarGz := filepath.Join(work, "docker.tar.gz")
	gzipFile(t, dockerTar, dockerTarGz)

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	regRef := strings.TrimPrefix(reg.URL, "http://") + "/node/base:1"
	r, err := name.ParseReference(regRef)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	configDigest, _ := img.ConfigName() // a docker archive's image ID

	for _, c := range []struct{ src, kind string }{
		{ociDir, "oci-layout"},
		{ociTar, "oci-archive"},
		{dockerTar, "docker-archive"},
		{dockerTarGz, "docker-archive"},
		{"docker://" + regRef, "registry"},
	} {
		t.Run(c.kind+"-"+filepath.Base(c.src), func(t *testing.T) {
			tree := t.TempDir()
			m, err := importInto(t, tree, "node", c.src)
			if err != nil {
				t.Fatal(err)
			}
			want := digest
			if c.kind == "docker-archive" {
				want = configDigest
			}
			if m.Kind != c.kind || m.Layers != 2 || m.Digest != want.String() {
				t.Errorf("meta %+v, want kind %s, 2 layers, digest %s", m, c.kind, want)
			}
			checkRootfs(t, filepath.Join(tree, "images/node/rootfs"), true)
		})
	}
}

func gzipFile(t testing.TB, in, out string) {
	t.Helper()
	data, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestImportRootfsTar(t *testing.T) {
	base := testLayers(t)[0]
	work := t.TempDir()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(base)
	zw.Close()
	var zs bytes.Buffer
	enc, _ := zstd.NewWriter(&zs)
	enc.Write(base)
	enc.Close()
	for name, data := range map[string][]byte{"rootfs.tar": base, "rootfs.tar.gz": gz.Bytes(), "rootfs.tar.zst": zs.Bytes()} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(work, name)
			os.WriteFile(src, data, 0o644)
			tree := t.TempDir()
			m, err := importInto(t, tree, "plain", src)
			if err != nil {
				t.Fatal(err)
			}
			if m.Kind != "rootfs-tar" || m.Layers != 1 {
				t.Errorf("meta %+v", m)
			}
			checkRootfs(t, filepath.Join(tree, "images/plain/rootfs"), false)
		})
	}
}

// Malicious layers are refused with UnsafeEntryError; nothing lands outside
// the image root and the image that was serving is left as it was.
func TestImportRefusesMaliciousLayers(t *testing.T) {
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	os.WriteFile(victim, []byte("keep"), 0o644)
	cases := map[string][][]entry{
		"dotdot":        {{{name: "../../../../" + outside[1:] + "/pwned", body: "x"}}},
		"dotdot inside": {{{name: "etc/../../pwned", body: "x"}}},
		"absolute":      {{{name: outside + "/pwned", body: "x"}}},
		"symlink then file": {
			{{name: "escape", typ: tar.TypeSymlink, link: outside}},
			{{name: "escape/pwned", body: "x"}},
		},
		"relative symlink then file": {
			{{name: "a/escape", typ: tar.TypeSymlink, link: "../../../../../../../../" + outside[1:]}},
			{{name: "a/escape/pwned", body: "x"}},
		},
		"symlink then dir": {{
			{name: "escape", typ: tar.TypeSymlink, link: outside},
			{name: "escape/sub/", typ: tar.TypeDir, mode: 0o755},
		}},
		"whiteout through symlink": {
			{{name: "escape", typ: tar.TypeSymlink, link: outside}},
			{{name: "escape/.wh.victim"}},
		},
		"whiteout of parent": {{{name: "etc/.wh.."}}},
		"whiteout dotdot":    {{{name: "etc/.wh..."}}},
		"hard link outside":  {{{name: "pw", typ: tar.TypeLink, link: "../../../../" + victim[1:]}}},
		"hard link via symlink": {
			{{name: "escape", typ: tar.TypeSymlink, link: outside}},
			{{name: "pw", typ: tar.TypeLink, link: "escape/victim"}},
		},
	}
	for name, layers := range cases {
		t.Run(name, func(t *testing.T) {
			tree := t.TempDir()
			good := filepath.Join(t.TempDir(), "good.tar")
			os.WriteFile(good, tarBytes(t, []entry{{name: "etc/os-release", body: "good"}}), 0o644)
			if _, err := importInto(t, tree, "img", good); err != nil {
				t.Fatal(err)
			}
			var raw [][]byte
			for _, l := range layers {
				raw = append(raw, tarBytes(t, l))
			}
			dir := filepath.Join(t.TempDir(), "oci")
			writeLayout(t, dir, testImage(t, raw))
			_, err := importInto(t, tree, "img", dir)
			t.Log(err)
			var ue *UnsafeEntryError
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v, want an UnsafeEntryError", err)
			}
			ents, _ := os.ReadDir(outside)
			if len(ents) != 1 {
				t.Errorf("something landed outside: %v", ents)
			}
			if data, _ := os.ReadFile(victim); string(data) != "keep" {
				t.Errorf("victim changed: %q", data)
			}
			if data, _ := os.ReadFile(filepath.Join(tree, "images/img/rootfs/etc/os-release")); string(data) != "good" {
				t.Errorf("old image not serving after a refused import: %q", data)
			}
			if left, _ := filepath.Glob(filepath.Join(tree, "images/img/.import-*")); len(left) != 0 {
				t.Errorf("temporary tree left behind: %v", left)
			}
		})
	}
}

func TestImportReplacesAtomically(t *testing.T) {
	tree := t.TempDir()
	src := filepath.Join(t.TempDir(), "a.tar")
	for i := range 2 {
		os.WriteFile(src, tarBytes(t, []entry{{name: "etc/version", body: fmt.Sprint(i)}}), 0o644)
		if _, err := importInto(t, tree, "img", src); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(filepath.Join(tree, "images/img/rootfs/etc/version")); string(data) != fmt.Sprint(i) {
			t.Fatalf("import %d: version %q", i, data)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(tree, "images/img/.import-*")); len(left) != 0 {
		t.Errorf("old tree left behind: %v", left)
	}
	// An interrupted import changes nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	os.WriteFile(src, tarBytes(t, []entry{{name: "etc/version", body: "never"}}), 0o644)
	if _, err := Import(ctx, Options{Tree: tree, Name: "img", Source: src}); err == nil {
		t.Fatal("import with a cancelled context succeeded")
	}
	if data, _ := os.ReadFile(filepath.Join(tree, "images/img/rootfs/etc/version")); string(data) != "1" {
		t.Errorf("after an interrupted import: version %q", data)
	}
	for _, bad := range []string{"", "..", ".hidden", "a/b"} {
		if _, err := Import(context.Background(), Options{Tree: tree, Name: bad, Source: src}); err == nil {
			t.Errorf("image name %q accepted", bad)
		}
	}
}
