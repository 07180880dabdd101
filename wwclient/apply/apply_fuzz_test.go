package apply

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// FuzzApply feeds arbitrary archives (seeded with hostile ones: escaping
// names, symlinks out of the root and through them, devices, hard links,
// oversized entries) to Apply. Invariants: no panic; nothing outside the
// root is created or changed; only directories, regular files and symlinks
// appear under the root; the content written stays within MaxTotalSize and
// each file within MaxEntrySize; no temporary file is left behind.
func FuzzApply(f *testing.F) {
	hostile := [][]ent{
		{file("etc/hosts", "127.0.0.1 localhost\n", 0o644), dirent("etc", 0o755)},
		{file("../outside/x", "escaped", 0o644)},
		{file("/abs", "escaped", 0o644)},
		{symlinkent("out", "../outside"), file("out/x", "escaped", 0o644)},
		{symlinkent("abs", "/"), file("abs/tmp/x", "escaped", 0o644), dirent("abs/new", 0o755)},
		{symlinkent("lnk", "../outside/sentinel"), file("lnk", "replaced", 0o644)},
		{ent{name: "dev/null", mode: cpio.TypeChar | 0o666}, ent{name: "fifo", mode: cpio.TypeFifo | 0o644},
			ent{name: "blk", mode: cpio.TypeBlock | 0o644}, ent{name: "sock", mode: cpio.TypeSocket | 0o644}},
		{ent{name: "a", body: "data-of-the-inode", mode: cpio.TypeReg | 0o644, links: 3, inode: 7},
			ent{name: "b", mode: cpio.TypeReg | 0o644, links: 3, inode: 7},
			ent{name: "c", mode: cpio.TypeReg | 0o644, links: 3, inode: 7}},
		// Hard links are written as copies: five of one 4000-byte file.
		{ent{name: "l1", mode: cpio.TypeReg | 0o644, links: 5, inode: 8}, ent{name: "l2", mode: cpio.TypeReg | 0o644, links: 5, inode: 8},
			ent{name: "l3", mode: cpio.TypeReg | 0o644, links: 5, inode: 8}, ent{name: "l4", mode: cpio.TypeReg | 0o644, links: 5, inode: 8},
			ent{name: "l5", body: strings.Repeat("L", 4000), mode: cpio.TypeReg | 0o644, links: 5, inode: 8}},
		{ent{name: "h1", mode: cpio.TypeReg | 0o644, links: 2, inode: 9}, ent{name: "h2", mode: cpio.TypeReg | 0o644, links: 2, inode: 9}},
		{file("big", strings.Repeat("x", 5000), 0o644)},
		{dirent("d", 0o755), file("d", "file over dir", 0o644), symlinkent("d", "elsewhere"), dirent("d", 0o700)},
		{ent{name: "suid", body: "#!", mode: cpio.TypeReg | cpio.ModeSetuid | cpio.ModeSticky | 0o4777, uid: 4242, gid: 4242}},
		{file(".x.wwtmp", "looks like a temp file", 0o644), file("x", "y", 0o644)},
	}
	for _, ents := range hostile {
		raw := rawCpio(f, ents...)
		f.Add(raw)
		f.Add(gz(f, raw))
	}
	f.Add(append(rawCpio(f, file("one", "1", 0o644)), rawCpio(f, file("two", "2", 0o644))...))

	opts := Options{MaxEntrySize: 4096, MaxTotalSize: 16 << 10, MaxEntries: 64, NoOwner: os.Geteuid() != 0}
	f.Fuzz(func(t *testing.T, archive []byte) {
		sandbox := t.TempDir()
		root := filepath.Join(sandbox, "root")
		outside := filepath.Join(sandbox, "outside")
		if err := os.MkdirAll(outside, 0o755); err != nil {
			t.Fatal(err)
		}
		sentinel := filepath.Join(outside, "sentinel")
		if err := os.WriteFile(sentinel, []byte("untouched"), 0o644); err != nil {
			t.Fatal(err)
		}

		res, _ := Apply(root, bytes.NewReader(archive), opts)

		// Outside the root: exactly the sentinel, unchanged.
		if b, err := os.ReadFile(sentinel); err != nil || string(b) != "untouched" {
			t.Fatalf("sentinel outside the root changed: %q %v", b, err)
		}
		var outsideNames []string
		_ = filepath.WalkDir(sandbox, func(p string, d fs.DirEntry, err error) error {
			if p == root {
				return filepath.SkipDir
			}
			if p != sandbox && p != outside && p != sentinel {
				outsideNames = append(outsideNames, p)
			}
			return nil
		})
		if len(outsideNames) > 0 {
			t.Fatalf("created outside the root: %v", outsideNames)
		}

		if res.Bytes > opts.MaxTotalSize {
			t.Fatalf("read %d content bytes, limit %d", res.Bytes, opts.MaxTotalSize)
		}
		var total int64
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p == root && os.IsNotExist(err) {
					return nil
				}
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			switch {
			case fi.Mode().IsRegular():
				if fi.Size() > opts.MaxEntrySize {
					t.Errorf("%s: %d bytes, entry limit %d", p, fi.Size(), opts.MaxEntrySize)
				}
				total += fi.Size()
				if strings.HasSuffix(p, ".wwtmp") && !bytes.Contains(archive, []byte(filepath.Base(p))) {
					t.Errorf("temporary file left behind: %s", p)
				}
			case fi.IsDir(), fi.Mode()&fs.ModeSymlink != 0:
			default:
				t.Errorf("%s: created a %v", p, fi.Mode().Type())
			}
			return nil
		})
		if err != nil {
			t.Fatalf("walk root: %v", err)
		}
		if total > opts.MaxTotalSize {
			t.Fatalf("%d bytes written under the root, limit %d", total, opts.MaxTotalSize)
		}
	})
}
