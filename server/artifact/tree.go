package artifact

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// times changing (file systems stamp times with a coarse clock: a jiffy on
// Linux, up to a second or two elsewhere), so its content goes into the
// fingerprint too.
var racyWindow = time.Second // a variable for tests

// hashCache remembers the content hash of files seen "racy", by path and
// metadata, so their fingerprint stays the same once they settle (no second
// build after an edit). It is bounded; forgetting costs at most a rebuild.
type hashCache struct {
	mu sync.Mutex
	m  map[string]hashEntry
}

type hashEntry struct {
	sum     []byte
	settled bool // hashed after the file's times were older than racyWindow
}

const maxHashCache = 100000

func (c *hashCache) get(k string) (hashEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	return e, ok
}

func (c *hashCache) put(k string, e hashEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxHashCache {
		c.m = map[string]hashEntry{}
	}
	c.m[k] = e
}

// fingerprintTree walks top and hashes, for every entry, its path, type and
// mode, owner, size, mtime and ctime (ns), inode and symlink target. Any
// write changes mtime and ctime, and ctime cannot be set back, so a
// fingerprint seen once never comes back for a changed tree — except for a
// file written twice within one tick of the file system's clock. So, as git
// does for its index, the content of a "racy" regular file (changed within
// racyWindow before the walk) is hashed too, on every walk while it is racy,
// and once more when it has settled; hc keeps that hash with the file's
// metadata so later walks give the same fingerprint without reading it.
//
// Directories are hashed as a Merkle tree (a directory's hash covers its
// entries' records and its subdirectories' hashes), so subtrees are walked in
// parallel and the result does not depend on the order they finish in.
//
// watch, if not nil, is called for every directory walked (rel "" for top)
// before the directory is read.
func fingerprintTree(top string, kind treeKind, hc *hashCache, watch func(rel string)) (fingerprint, error) {
	r, err := os.OpenRoot(top)
	if err != nil {
		return fingerprint{}, err
	}
	defer r.Close()
	w := &fpWalker{
		top:   top,
		kind:  kind,
		hc:    hc,
		watch: watch,
		racy:  time.Now().Add(-racyWindow),
		slots: make(chan struct{}, walkParallel),
	}
	sum, err := w.dir(r, "")
	if err != nil {
		return fingerprint{}, err
	}
	sort.Strings(w.templates)
	return fingerprint{hash: hex.EncodeToString(sum), entries: int(w.entries.Load()), templates: w.templates}, nil
}

// walkParallel bounds the extra goroutines of one fingerprint walk; the walk
// is mostly lstat calls, which parallelise well.
var walkParallel = max(4, 2*runtime.GOMAXPROCS(0))

type fpWalker struct {
	top     string
	kind    treeKind
	hc      *hashCache
	watch   func(rel string)
	racy    time.Time
	slots   chan struct{}
	entries atomic.Int64

	mu        sync.Mutex
	templates []string
}

// dir returns the hash of the directory d (at rel).
func (w *fpWalker) dir(d *os.Root, rel string) ([]byte, error) {
	if w.watch != nil {
		w.watch(rel)
	}
	names, err := readNames(d, rel)
	if err != nil {
		return nil, err
	}
	records := make([][]byte, 0, len(names))
	children := make([]*dirChild, 0, len(names)) // parallel to records; nil for non-directories
	fail := func(err error) ([]byte, error) {
		for _, c := range children {
			if c != nil {
				<-c.done
			}
		}
		return nil, err
	}
	for _, name := range names {
		e, fi, skip, err := w.lstat(d, rel, name)
		if err != nil {
			return fail(err)
		}
		if fi == nil {
			continue // gone since it was listed
		}
		rec, err := w.record(&e, d, name)
		if err != nil {
			return fail(err)
		}
		w.entries.Add(1)
		if w.kind == treeOverlay {
			if out, ok := templateOut(&e); ok {
				w.mu.Lock()
				w.templates = append(w.templates, out)
				w.mu.Unlock()
			}
		}
		records = append(records, rec)
		if !fi.IsDir() || skip {
			children = append(children, nil)
			continue
		}
		sub, err := d.OpenRoot(name)
		if errors.Is(err, fs.ErrNotExist) {
			records = records[:len(records)-1]
			continue
		}
		if err != nil {
			return fail(err)
		}
		children = append(children, w.walkChild(sub, e.rel))
	}
	return sumDir(records, children)
}

// readNames lists a directory, sorted: the order of its fingerprint.
func readNames(d *os.Root, rel string) ([]string, error) {
	f, err := d.Open(".")
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", displayRel(rel), err)
	}
	sort.Strings(names)
	return names, nil
}

// lstat describes one directory entry; fi is nil when it has gone since it
// was listed. skip marks the image's boot directory, whose contents are not
// part of the image.
func (w *fpWalker) lstat(d *os.Root, rel, name string) (e entry, fi fs.FileInfo, skip bool, err error) {
	fi, err = d.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return e, nil, false, nil
	}
	if err != nil {
		return e, nil, false, err
	}
	e = newEntry(path.Join(rel, name), fi)
	if fi.Mode()&fs.ModeSymlink != 0 {
		if e.link, err = d.Readlink(name); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return e, nil, false, nil
			}
			return e, nil, false, err
		}
	}
	skip = w.kind == treeImage && e.rel == imageBootDir && fi.IsDir()
	if skip {
		// Only the empty directory goes into the image: adding a
		// kernel must not rebuild it.
		e.size, e.mtime, e.ctime, e.ino = 0, time.Unix(0, 0), 0, 0
	}
	return e, fi, skip, nil
}

// dirChild is a subdirectory being fingerprinted, maybe on another goroutine.
type dirChild struct {
	sum  []byte
	err  error
	done chan struct{}
}

// walkChild fingerprints sub on a free slot's goroutine, or in place when
// none is free (which bounds the goroutines), and closes sub.
func (w *fpWalker) walkChild(sub *os.Root, rel string) *dirChild {
	c := &dirChild{done: make(chan struct{})}
	walk := func() {
		c.sum, c.err = w.dir(sub, rel)
		sub.Close()
		close(c.done)
	}
	select {
	case w.slots <- struct{}{}:
		go func() {
			defer func() { <-w.slots }()
			walk()
		}()
	default:
		walk()
	}
	return c
}

// sumDir hashes the records in order, each directory's followed by its
// children's sum; it waits for every child and returns the first error.
func sumDir(records [][]byte, children []*dirChild) ([]byte, error) {
	h := sha256.New()
	var err error
	for i, rec := range records {
		h.Write(rec)
		if c := children[i]; c != nil {
			<-c.done
			if c.err != nil && err == nil {
				err = c.err
			}
			h.Write(c.sum)
		}
	}
	if err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// record is the fingerprint record of one entry.
func (w *fpWalker) record(e *entry, d *os.Root, name string) ([]byte, error) {
	buf := make([]byte, 0, 128)
	buf = append(buf, path.Base(e.rel)...)
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
	if e.mode.IsRegular() {
		ck := w.top + "\x00" + e.rel + "\x00" + string(buf)
		isRacy := e.mtime.After(w.racy) || time.Unix(0, e.ctime).After(w.racy)
		known, ok := w.hc.get(ck)
		var sum []byte
		switch {
		case ok && known.settled:
			sum = known.sum
		case ok || isRacy:
			var err error
			if sum, err = hashFile(d, name); err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					return nil, fmt.Errorf("read %s: %w", e.rel, err)
				}
				break
			}
			w.hc.put(ck, hashEntry{sum: sum, settled: !isRacy})
		}
		if sum != nil {
			buf = append(buf, 0)
			buf = append(buf, sum...)
		}
	}
	return append(buf, '\n'), nil
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
	f, err := openRead(d, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file any more: %w", name, fs.ErrNotExist)
	}
	h := sha256.New()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	if _, err := io.CopyBuffer(h, f, *bp); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// openRead opens a file of a tree for reading, confined to d. O_NONBLOCK
// keeps a FIFO swapped in for a regular file from blocking the open; callers
// check that what they opened is a regular file.
func openRead(d *os.Root, name string) (*os.File, error) {
	return d.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
