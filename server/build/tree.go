package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// entry is one file of a source tree as lstat saw it.
type entry struct {
	rel   string // slash-separated path below the tree root, e.g. "etc/hosts"
	mode  fs.FileMode
	uid   uint32
	gid   uint32
	size  int64
	mtime time.Time
	ctime int64  // ns; changes on every write, chmod, chown, rename (cannot be set back)
	ino   uint64 // changes when a file is replaced
	link  string // symlink target, as written
}

func newEntry(rel string, fi fs.FileInfo) entry {
	e := entry{rel: rel, mode: fi.Mode(), size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.uid, e.gid = st.Uid, st.Gid
		e.ctime = st.Ctim.Nano()
		e.ino = st.Ino
	}
	return e
}

// errSkipDir returned by a walkFunc for a directory skips its contents.
var errSkipDir = errors.New("skip this directory")

// walkFunc is called for every entry below the tree root (not the root
// itself), parents before children. dir is the open directory holding the
// entry (e.rel's base name is the name in it); it is valid only during the
// call.
type walkFunc func(e *entry, dir *os.Root, name string) error

// walkTree walks the tree at top in lexical order without following symlinks.
// Every access goes through an os.Root opened on the directory at hand, so
// neither a symlink in the tree nor a directory swapped for a symlink during
// the walk can make it read outside the tree. Entries that vanish during the
// walk are left out.
func walkTree(top string, fn walkFunc) error {
	r, err := os.OpenRoot(top)
	if err != nil {
		return err
	}
	defer r.Close()
	return walkDir(r, "", fn)
}

func walkDir(d *os.Root, rel string, fn walkFunc) error {
	f, err := d.Open(".")
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("read directory %s: %w", displayRel(rel), err)
	}
	sort.Strings(names)
	for _, name := range names {
		fi, err := d.Lstat(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		e := newEntry(path.Join(rel, name), fi)
		if fi.Mode()&fs.ModeSymlink != 0 {
			if e.link, err = d.Readlink(name); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return err
			}
		}
		err = fn(&e, d, name)
		if err == errSkipDir {
			continue
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			continue
		}
		sub, err := d.OpenRoot(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		err = walkDir(sub, e.rel, fn)
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func displayRel(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

// fingerprint identifies the state of a source tree.
type fingerprint struct {
	hash      string   // hex sha256 over every entry's metadata
	entries   int      // number of entries
	templates []string // overlays only: output paths of the *.ww templates
}

// treeKind selects what a fingerprint covers; it must match what the
// builders read.
type treeKind int

const (
	treeImage   treeKind = iota // everything but the contents of boot/
	treeOverlay                 // everything; templates listed
)

// racyWindow: a file changed this recently may change again without its
// times changing (file systems stamp times with a coarse clock: a jiffy, or
// 1-2 s on some), so its content goes into the fingerprint too.
const racyWindow = 100 * time.Millisecond

// fingerprintTree walks top and hashes, for every entry, its path, type and
// mode, owner, size, mtime and ctime (ns), inode and symlink target. Content
// is read only for "racy" regular files, changed within racyWindow before the
// walk started (as git does for its index): any other write changes mtime
// and ctime, and ctime cannot be set back, so a fingerprint seen once never
// comes back for a changed tree.
func fingerprintTree(top string, kind treeKind) (fingerprint, error) {
	h := sha256.New()
	var fp fingerprint
	buf := make([]byte, 0, 256)
	racy := time.Now().Add(-racyWindow)
	err := walkTree(top, func(e *entry, d *os.Root, name string) error {
		if kind == treeImage && e.rel == imageBootDir && e.mode.IsDir() {
			// Only the empty directory goes into the image: adding a
			// kernel must not rebuild it.
			e.size, e.mtime, e.ctime, e.ino = 0, time.Unix(0, 0), 0, 0
		}
		buf = buf[:0]
		buf = append(buf, e.rel...)
		buf = append(buf, 0)
		buf = strconv.AppendUint(buf, uint64(e.mode), 16)
		buf = append(buf, ' ')
		buf = strconv.AppendUint(buf, uint64(e.uid), 10)
		buf = append(buf, ' ')
		buf = strconv.AppendUint(buf, uint64(e.gid), 10)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, e.size, 10)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, e.mtime.UnixNano(), 10)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, e.ctime, 10)
		buf = append(buf, ' ')
		buf = strconv.AppendUint(buf, e.ino, 10)
		buf = append(buf, 0)
		buf = append(buf, e.link...)
		if e.mode.IsRegular() && (e.mtime.After(racy) || time.Unix(0, e.ctime).After(racy)) {
			sum, err := hashFile(d, name)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("read %s: %w", e.rel, err)
			}
			buf = append(buf, 0)
			buf = append(buf, sum...)
		}
		buf = append(buf, '\n')
		h.Write(buf)
		fp.entries++
		switch kind {
		case treeImage:
			if e.rel == imageBootDir && e.mode.IsDir() {
				return errSkipDir
			}
		case treeOverlay:
			if out, ok := templateOut(e); ok {
				fp.templates = append(fp.templates, out)
			}
		}
		return nil
	})
	if err != nil {
		return fingerprint{}, err
	}
	fp.hash = hex.EncodeToString(h.Sum(nil))
	return fp, nil
}

// templateOut reports whether e is a template (a regular *.ww file) and the
// path it renders to.
func templateOut(e *entry) (string, bool) {
	if !e.mode.IsRegular() || !strings.HasSuffix(e.rel, templateSuffix) {
		return "", false
	}
	out := strings.TrimSuffix(e.rel, templateSuffix)
	if out == "" || strings.HasSuffix(out, "/") {
		return "", false
	}
	return out, true
}

// hashFile returns the sha256 of a file's content.
func hashFile(d *os.Root, name string) ([]byte, error) {
	f, err := d.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	if _, err := io.CopyBuffer(h, f, *bp); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}
