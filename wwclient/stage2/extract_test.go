package stage2

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
)

func TestExtract(t *testing.T) {
	dir := t.TempDir()
	mt := time.Unix(1600000000, 0)
	files := []testFile{
		{name: ".", mode: cpio.TypeDir | 0o755},
		{name: "etc", mode: cpio.TypeDir | 0o755, mt: mt},
		{name: "etc/hostname", mode: cpio.TypeReg | 0o644, data: "node\n", mt: mt},
		{name: "usr", mode: cpio.TypeDir | 0o755},
		{name: "usr/bin", mode: cpio.TypeDir | 0o755},
		{name: "usr/bin/su", mode: cpio.TypeReg | cpio.ModeSetuid | 0o755, data: "#!su", uid: 0},
		{name: "usr/bin/game", mode: cpio.TypeReg | 0o755, data: "game", uid: 1234},
		{name: "bin", mode: cpio.TypeSymlink | 0o777, data: "usr/bin"},
		{name: "etc/localtime", mode: cpio.TypeSymlink | 0o777, data: "/usr/share/zoneinfo/UTC"},
		{name: "ro", mode: cpio.TypeDir | 0o555, mt: mt},
		{name: "ro/file", mode: cpio.TypeReg | 0o444, data: "in a read-only dir"},
		{name: "tmp", mode: cpio.TypeDir | cpio.ModeSticky | 0o777},
		{name: "run/initctl", mode: cpio.TypeFifo | 0o600},
		{name: "dev/null", mode: cpio.TypeChar | 0o666},
		{name: "./etc/motd", mode: cpio.TypeReg | 0o644, data: "hi"},
	}
	res, err := Extract(dir, bytes.NewReader(archive(t, files)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 5 || res.Symlinks != 2 || res.Other != 1 || res.Skipped != 2 {
		t.Errorf("result %+v", res)
	}
	check := func(rel string, mode fs.FileMode, uid int, content string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Error(err)
			return
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", rel, fi.Mode(), mode)
		}
		if st := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && int(st.Uid) != uid {
			t.Errorf("%s: uid %d, want %d", rel, st.Uid, uid)
		}
		if fi.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); string(b) != content {
				t.Errorf("%s: %q", rel, b)
			}
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if l, _ := os.Readlink(p); l != content {
				t.Errorf("%s -> %q", rel, l)
			}
		}
	}
	check("etc", fs.ModeDir|0o755, 0, "")
	check("etc/hostname", 0o644, 0, "node\n")
	check("usr/bin/su", fs.ModeSetuid|0o755, 0, "#!su")
	check("usr/bin/game", 0o755, 1234, "game")
	check("bin", fs.ModeSymlink|0o777, 0, "usr/bin")
	check("etc/localtime", fs.ModeSymlink|0o777, 0, "/usr/share/zoneinfo/UTC")
	check("ro", fs.ModeDir|0o555, 0, "")
	check("ro/file", 0o444, 0, "in a read-only dir")
	check("tmp", fs.ModeDir|fs.ModeSticky|0o777, 0, "")
	check("run/initctl", fs.ModeNamedPipe|0o600, 0, "")
	check("etc/motd", 0o644, 0, "hi")
	if _, err := os.Lstat(filepath.Join(dir, "dev/null")); err == nil {
		t.Error("device node created")
	}
	for _, rel := range []string{"etc", "etc/hostname", "ro"} {
		fi, _ := os.Stat(filepath.Join(dir, rel))
		if !fi.ModTime().Equal(mt) {
			t.Errorf("%s: mtime %v, want %v", rel, fi.ModTime(), mt)
		}
	}
}

// TestExtractLaterEntryWins: as when the kernel unpacks archives one after
// the other, a later entry replaces an earlier one; a symlink is replaced,
// never written through.
func TestExtractLaterEntryWins(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	first := archive(t, []testFile{
		{name: "etc", mode: cpio.TypeDir | 0o755},
		{name: "etc/passwd", mode: cpio.TypeSymlink | 0o777, data: filepath.Join(outside, "passwd")},
		{name: "etc/old", mode: cpio.TypeReg | 0o644, data: "old"},
		{name: "d", mode: cpio.TypeDir | 0o755},
		{name: "d/x", mode: cpio.TypeReg | 0o644, data: "x"},
	})
	second := archive(t, []testFile{
		{name: "etc/passwd", mode: cpio.TypeReg | 0o644, data: "root:x:0:0\n"},
		{name: "etc/old", mode: cpio.TypeReg | 0o600, data: "new"},
		{name: "d", mode: cpio.TypeReg | 0o644, data: "a file now"},
	})
	stream := append(append(first, make([]byte, 512)...), second...)
	if _, err := Extract(dir, bytes.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etc/passwd")); string(b) != "root:x:0:0\n" {
		t.Errorf("etc/passwd: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(outside, "passwd")); err == nil {
		t.Fatal("wrote through the symlink out of the root")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etc/old")); string(b) != "new" {
		t.Errorf("etc/old: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "d")); string(b) != "a file now" {
		t.Errorf("d: %q", b)
	}
}

// TestExtractRefusesEscapes: absolute names, "..", and paths through a
// symlink (to outside or inside the root) are refused; nothing is written
// outside the root.
func TestExtractRefusesEscapes(t *testing.T) {
	outside := t.TempDir()
	cases := map[string][]testFile{
		"absolute": {{name: filepath.Join(outside, "abs"), mode: cpio.TypeReg | 0o644, data: "x"}},
		"dotdot":   {{name: "../" + filepath.Base(outside) + "/dotdot", mode: cpio.TypeReg | 0o644, data: "x"}},
		"inner dotdot": {{name: "a", mode: cpio.TypeDir | 0o755},
			{name: "a/../../escape", mode: cpio.TypeReg | 0o644, data: "x"}},
		"through symlink out": {{name: "evil", mode: cpio.TypeSymlink | 0o777, data: outside},
			{name: "evil/planted", mode: cpio.TypeReg | 0o644, data: "x"}},
		"through relative symlink out": {{name: "evil", mode: cpio.TypeSymlink | 0o777, data: "../../../../../../../../" + outside},
			{name: "evil/planted", mode: cpio.TypeReg | 0o644, data: "x"}},
		"through symlink in": {{name: "real", mode: cpio.TypeDir | 0o755}, {name: "link", mode: cpio.TypeSymlink | 0o777, data: "real"},
			{name: "link/file", mode: cpio.TypeReg | 0o644, data: "x"}},
		"dir through symlink": {{name: "evil", mode: cpio.TypeSymlink | 0o777, data: outside},
			{name: "evil/sub", mode: cpio.TypeDir | 0o755}},
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Extract(dir, bytes.NewReader(archive(t, files)))
			if !errors.Is(err, ErrUnsafePath) {
				t.Errorf("err %v, want ErrUnsafePath", err)
			}
			ents, _ := os.ReadDir(outside)
			if len(ents) != 0 {
				t.Fatalf("written outside the root: %v", ents)
			}
		})
	}
}

func TestExtractTruncated(t *testing.T) {
	a := archive(t, []testFile{{name: "f", mode: cpio.TypeReg | 0o644, data: "0123456789"}})
	for _, n := range []int{len(a) - 200, 115} {
		if _, err := Extract(t.TempDir(), bytes.NewReader(a[:n])); err == nil {
			t.Errorf("truncated at %d: no error", n)
		}
	}
	if _, err := Extract(t.TempDir(), bytes.NewReader(nil)); err == nil {
		t.Error("empty stream: no error")
	}
}
