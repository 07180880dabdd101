package apply

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
)

func TestApplyBasic(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	mt := time.Unix(1600000000, 0)
	arch := gz(t, rawCpio(t,
		ent{name: ".", mode: cpio.TypeDir | 0o700},
		dirent("etc", 0o755),
		ent{name: "etc/secret", body: "s3cr3t\n", mode: cpio.TypeReg | 0o600, uid: 1234, gid: 5678, mtime: mt},
		dirent("./usr/local/bin", 0o750), // parents implied, ./ prefix accepted
		ent{name: "usr/local/bin/tool", body: "#!/bin/sh\n", mode: cpio.TypeReg | cpio.ModeSetuid | 0o755, mtime: mt},
		symlinkent("etc/localtime", "/usr/share/zoneinfo/UTC"),
		ent{name: "dev/null", mode: cpio.TypeChar | 0o666},
		file("empty", "", 0o644),
	))
	var events []string
	res, err := Apply(root, bytes.NewReader(arch), Options{Progress: func(n string, a Action) { events = append(events, n+":"+a.String()) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 3 || res.Symlinks != 1 || res.Skipped != 1 || res.Dirs < 2 {
		t.Fatalf("result %+v events %v", res, events)
	}
	if got := readFile(t, filepath.Join(root, "etc/secret")); got != "s3cr3t\n" {
		t.Fatalf("content %q", got)
	}
	st := stat(t, filepath.Join(root, "etc/secret"))
	if st.Mode&0o7777 != 0o600 || st.Uid != 1234 || st.Gid != 5678 {
		t.Fatalf("mode %o uid %d gid %d", st.Mode&0o7777, st.Uid, st.Gid)
	}
	fi, _ := os.Stat(filepath.Join(root, "etc/secret"))
	if !fi.ModTime().Equal(mt) {
		t.Fatalf("mtime %v want %v", fi.ModTime(), mt)
	}
	if st := stat(t, filepath.Join(root, "usr/local/bin/tool")); st.Mode&0o7777 != 0o4755 {
		t.Fatalf("setuid lost: %o", st.Mode&0o7777)
	}
	if st := stat(t, filepath.Join(root, "usr/local/bin")); st.Mode&0o7777 != 0o750 {
		t.Fatalf("dir mode %o", st.Mode&0o7777)
	}
	if st := stat(t, filepath.Join(root, "usr")); st.Mode&0o777 != 0o755 {
		t.Fatalf("implied parent mode %o", st.Mode&0o777)
	}
	if l, err := os.Readlink(filepath.Join(root, "etc/localtime")); err != nil || l != "/usr/share/zoneinfo/UTC" {
		t.Fatalf("symlink %q %v", l, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "dev/null")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("device node must be skipped: %v", err)
	}
	if st := stat(t, root); st.Mode&0o777 == 0o700 {
		t.Fatal("the root directory itself must not be changed by a '.' entry")
	}
	if readFile(t, filepath.Join(root, "empty")) != "" {
		t.Fatal("empty file")
	}
	// no temporary files left
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if strings.HasSuffix(p, ".wwtmp") {
			t.Errorf("leftover %s", p)
		}
		return nil
	})
}

func TestUnchangedFilesKeepInode(t *testing.T) {
	root := t.TempDir()
	big := strings.Repeat("0123456789abcdef", (compareInMemory/16)+100) // > in-memory limit
	uid, gid := os.Geteuid(), os.Getegid()
	ents := []ent{
		dirent("etc", 0o755),
		{name: "etc/hosts", body: "127.0.0.1 localhost\n", mode: cpio.TypeReg | 0o644, uid: uid, gid: gid},
		{name: "big", body: big, mode: cpio.TypeReg | 0o644, uid: uid, gid: gid},
		{name: "link", link: "etc/hosts", mode: cpio.TypeSymlink | 0o777, uid: uid, gid: gid},
	}
	arch := gz(t, rawCpio(t, ents...))
	if _, err := Apply(root, bytes.NewReader(arch), Options{}); err != nil {
		t.Fatal(err)
	}
	before := map[string]fs.FileInfo{}
	for _, n := range []string{"etc/hosts", "big", "link"} {
		fi, err := os.Lstat(filepath.Join(root, n))
		if err != nil {
			t.Fatal(err)
		}
		before[n] = fi
	}
	res, err := Apply(root, bytes.NewReader(arch), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 0 || res.Symlinks != 0 || res.Unchanged != 3 || res.Changed() {
		t.Fatalf("second apply changed things: %+v", res)
	}
	for n, fi := range before {
		st0 := fi.Sys().(*syscallStat)
		st1 := stat(t, filepath.Join(root, n))
		if st0.Ino != st1.Ino || st0.Ctim != st1.Ctim || st0.Mtim != st1.Mtim {
			t.Errorf("%s was touched: ino %d->%d ctime %v->%v", n, st0.Ino, st1.Ino, st0.Ctim, st1.Ctim)
		}
	}
	// a changed file gets a new inode; an open reader keeps the old content
	f, err := os.Open(filepath.Join(root, "etc/hosts"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ents[1].body = "10.0.0.1 other\n"
	ents[2].body = big[:len(big)-1] + "X" // same size, different content (hash path)
	res, err = Apply(root, bytes.NewReader(gz(t, rawCpio(t, ents...))), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 2 || res.Unchanged != 1 {
		t.Fatalf("result %+v", res)
	}
	if st := stat(t, filepath.Join(root, "etc/hosts")); st.Ino == before["etc/hosts"].Sys().(*syscallStat).Ino {
		t.Fatal("changed file kept its inode: not replaced by rename")
	}
	old, _ := io.ReadAll(f)
	if string(old) != "127.0.0.1 localhost\n" {
		t.Fatalf("open reader saw %q", old)
	}
	if got := readFile(t, filepath.Join(root, "big")); got[len(got)-1] != 'X' {
		t.Fatal("big file not updated")
	}
	// mode-only change rewrites too
	ents[1].mode = cpio.TypeReg | 0o640
	if res, err = Apply(root, bytes.NewReader(gz(t, rawCpio(t, ents...))), Options{}); err != nil || res.Written != 1 {
		t.Fatalf("mode change: %+v %v", res, err)
	}
	if st := stat(t, filepath.Join(root, "etc/hosts")); st.Mode&0o777 != 0o640 {
		t.Fatalf("mode %o", st.Mode&0o777)
	}
	// symlink target change
	ents[3].link = "big"
	if res, err = Apply(root, bytes.NewReader(gz(t, rawCpio(t, ents...))), Options{}); err != nil || res.Symlinks != 1 {
		t.Fatalf("symlink change: %+v %v", res, err)
	}
	if l, _ := os.Readlink(filepath.Join(root, "link")); l != "big" {
		t.Fatalf("link %q", l)
	}
}

func TestOwnerChangeRewrites(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	e := ent{name: "f", body: "x", mode: cpio.TypeReg | 0o644, uid: 0, gid: 0}
	if _, err := Apply(root, bytes.NewReader(rawCpio(t, e)), Options{}); err != nil {
		t.Fatal(err)
	}
	e.uid = 42
	res, err := Apply(root, bytes.NewReader(rawCpio(t, e)), Options{})
	if err != nil || res.Written != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	if st := stat(t, filepath.Join(root, "f")); st.Uid != 42 {
		t.Fatalf("uid %d", st.Uid)
	}
	// NoOwner: owner differences are ignored and nothing is chowned
	e.uid = 7
	res, err = Apply(root, bytes.NewReader(rawCpio(t, e)), Options{NoOwner: true})
	if err != nil || res.Unchanged != 1 {
		t.Fatalf("NoOwner: %+v %v", res, err)
	}
	if st := stat(t, filepath.Join(root, "f")); st.Uid != 42 {
		t.Fatalf("uid %d", st.Uid)
	}
}

func TestPathEscapeRefused(t *testing.T) {
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	for _, name := range []string{"../evil", "/abs", "a/../../evil", "./../evil", "a/b/../../../evil"} {
		_, err := Apply(root, bytes.NewReader(rawCpio(t, file(name, "x", 0o644))), Options{})
		if !errors.Is(err, ErrUnsafePath) {
			t.Errorf("%q: err = %v, want ErrUnsafePath", name, err)
		}
	}
	// through a symlink: absolute and relative escapes are refused by os.Root
	for i, target := range []string{parent, "..", "../.."} {
		lname := "l" + string(rune('0'+i))
		_, err := Apply(root, bytes.NewReader(rawCpio(t,
			symlinkent(lname, target),
			file(lname+"/evil", "x", 0o644),
		)), Options{})
		if err == nil {
			t.Errorf("symlink to %q: escape not refused", target)
		}
	}
	// the symlink itself as a target of a write: replaced, not followed
	if err := os.WriteFile(filepath.Join(parent, "victim"), []byte("orig"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../victim", filepath.Join(root, "v")); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(root, bytes.NewReader(rawCpio(t, file("v", "new", 0o644))), Options{}); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(parent, "victim")) != "orig" {
		t.Fatal("write followed a symlink out of the root")
	}
	// nothing was created outside the root
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		if e.Name() != "root" && e.Name() != "victim" {
			t.Errorf("created outside root: %s", e.Name())
		}
	}
	if CleanNameOK("a/..b/c") != "a/..b/c" {
		t.Error("'..b' is a valid name")
	}
}

func CleanNameOK(n string) string {
	c, err := CleanName(n)
	if err != nil {
		return "ERR"
	}
	return c
}

func TestLimits(t *testing.T) {
	root := t.TempDir()
	_, err := Apply(root, bytes.NewReader(rawCpio(t, file("big", strings.Repeat("x", 100), 0o644))), Options{MaxEntrySize: 99})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("entry size: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "big")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("oversized entry written")
	}
	_, err = Apply(root, bytes.NewReader(rawCpio(t, file("a", "12345", 0o644), file("b", "12345", 0o644))), Options{MaxTotalSize: 8})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("total size: %v", err)
	}
	_, err = Apply(root, bytes.NewReader(rawCpio(t, file("a", "", 0o644), file("b", "", 0o644), file("c", "", 0o644))), Options{MaxEntries: 2})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("entries: %v", err)
	}
}

func TestMultiMemberAndConcatenated(t *testing.T) {
	root := t.TempDir()
	a1 := rawCpio(t, dirent("etc", 0o755), file("etc/a", "first", 0o644), file("etc/b", "b1", 0o644))
	a2 := rawCpio(t, file("etc/a", "second", 0o644), file("etc/c", "c2", 0o644))
	a3 := rawCpio(t, file("etc/d", "d3", 0o644))
	// member 1: a1 + NUL padding to 512 + a2; member 2: a3
	pad := make([]byte, (512-len(a1)%512)%512)
	m1 := gz(t, append(append(append([]byte{}, a1...), pad...), a2...))
	m2 := gz(t, a3)
	res, err := Apply(root, bytes.NewReader(append(m1, m2...)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"etc/a": "second", "etc/b": "b1", "etc/c": "c2", "etc/d": "d3"}
	for n, w := range want {
		if got := readFile(t, filepath.Join(root, n)); got != w {
			t.Errorf("%s = %q want %q", n, got, w)
		}
	}
	if res.Written != 5 {
		t.Fatalf("result %+v", res)
	}
	// raw (uncompressed) concatenated archives work too
	root2 := t.TempDir()
	if _, err := Apply(root2, bytes.NewReader(append(append(append([]byte{}, a1...), a2...), a3...)), Options{}); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(root2, "etc/a")) != "second" {
		t.Fatal("raw concatenation")
	}
}

func TestTruncatedAndGarbage(t *testing.T) {
	full := rawCpio(t, file("a", strings.Repeat("A", 1000), 0o644), file("b", strings.Repeat("B", 1000), 0o644))
	// cut inside b's data
	cut := bytes.Index(full, []byte("BBBB")) + 500
	root := t.TempDir()
	_, err := Apply(root, bytes.NewReader(gz(t, full[:cut])), Options{})
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated data: %v", err)
	}
	if readFile(t, filepath.Join(root, "a")) != strings.Repeat("A", 1000) {
		t.Fatal("a should be complete")
	}
	if _, err := os.Lstat(filepath.Join(root, "b")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("partial b must not exist")
	}
	if _, err := os.Lstat(filepath.Join(root, ".b.wwtmp")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("temporary file must be removed on error")
	}
	// cut exactly at the start of the trailer: no trailer
	trailer := bytes.LastIndex(full, []byte("070701"))
	_, err = Apply(t.TempDir(), bytes.NewReader(full[:trailer]), Options{})
	if err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("missing trailer: %v", err)
	}
	// cut inside a header
	_, err = Apply(t.TempDir(), bytes.NewReader(full[:trailer+50]), Options{})
	if err == nil {
		t.Fatal("cut header: want error")
	}
	for name, in := range map[string][]byte{
		"empty":   nil,
		"garbage": []byte("this is not a cpio archive at all, definitely not"),
		"badgzip": {0x1f, 0x8b, 0, 0, 0},
		"zeros":   make([]byte, 1024),
	} {
		if _, err := Apply(t.TempDir(), bytes.NewReader(in), Options{}); err == nil {
			t.Errorf("%s: want error", name)
		}
	}
}

func TestTypeChanges(t *testing.T) {
	root := t.TempDir()
	// existing directory replaced by a file; existing file replaced by a dir
	if err := os.MkdirAll(filepath.Join(root, "wasdir/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "wasfile"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// merged-/usr style symlink to a directory is kept for a dir entry
	if err := os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/lib", filepath.Join(root, "lib")); err != nil {
		t.Fatal(err)
	}
	_, err := Apply(root, bytes.NewReader(rawCpio(t,
		file("wasdir", "now a file", 0o644),
		dirent("wasfile", 0o755),
		file("wasfile/inner", "i", 0o644),
		dirent("lib", 0o755),
		file("lib/libx.so", "elf", 0o644),
	)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(root, "wasdir")) != "now a file" {
		t.Fatal("dir -> file")
	}
	if readFile(t, filepath.Join(root, "wasfile/inner")) != "i" {
		t.Fatal("file -> dir")
	}
	if fi, err := os.Lstat(filepath.Join(root, "lib")); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatal("lib symlink replaced")
	}
	if readFile(t, filepath.Join(root, "usr/lib/libx.so")) != "elf" {
		t.Fatal("file through kept symlink")
	}
}

func TestHardLinksAsCopies(t *testing.T) {
	root := t.TempDir()
	_, err := Apply(root, bytes.NewReader(rawCpio(t,
		ent{name: "h1", mode: cpio.TypeReg | 0o644, links: 3, inode: 77},
		ent{name: "h2", mode: cpio.TypeReg | 0o644, links: 3, inode: 77},
		ent{name: "h3", body: "shared", mode: cpio.TypeReg | 0o644, links: 3, inode: 77},
		ent{name: "e1", mode: cpio.TypeReg | 0o600, links: 2, inode: 78},
		ent{name: "e2", mode: cpio.TypeReg | 0o600, links: 2, inode: 78},
	)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"h1", "h2", "h3"} {
		if got := readFile(t, filepath.Join(root, n)); got != "shared" {
			t.Errorf("%s = %q", n, got)
		}
	}
	for _, n := range []string{"e1", "e2"} {
		if got := readFile(t, filepath.Join(root, n)); got != "" {
			t.Errorf("%s = %q", n, got)
		}
		if st := stat(t, filepath.Join(root, n)); st.Mode&0o777 != 0o600 {
			t.Errorf("%s mode %o", n, st.Mode&0o777)
		}
	}
}

func TestApplyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.img.gz")
	if err := os.WriteFile(p, gz(t, rawCpio(t, file("x", "y", 0o644))), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "new", "root") // created
	if _, err := ApplyFile(root, p, Options{}); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(root, "x")) != "y" {
		t.Fatal("content")
	}
	if _, err := ApplyFile(root, p+".missing", Options{}); err == nil {
		t.Fatal("missing archive")
	}
}

func TestTempNameLong(t *testing.T) {
	long := strings.Repeat("n", 250)
	tn := tempName("d/" + long)
	if len(filepath.Base(tn)) > 255 || !strings.HasPrefix(tn, "d/.") {
		t.Fatalf("temp name %q", tn)
	}
	root := t.TempDir()
	if _, err := Apply(root, bytes.NewReader(rawCpio(t, file(long, "z", 0o644))), Options{}); err != nil {
		t.Fatal(err)
	}
}
