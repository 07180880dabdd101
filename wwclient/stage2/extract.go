package stage2

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/cavaliergopher/cpio"
	"golang.org/x/sys/unix"

	"github.com/wwcluster/ww/wwclient/apply"
)

// ErrUnsafePath is returned (wrapped) for an archive entry that would land
// outside the root: an absolute name, "..", or a path through a symlink.
var ErrUnsafePath = apply.ErrUnsafePath

// ExtractResult counts what Extract wrote.
type ExtractResult struct {
	Files, Dirs, Symlinks, Other, Skipped int
	Bytes                                 int64
}

// Extract unpacks a newc cpio stream (one or more archives, as the kernel
// reads an initrd) into the directory dir, which should be empty (a fresh
// tmpfs). Every access goes through os.Root, and no symlink in the tree is
// ever followed: an entry whose parent is a symlink is refused, an entry
// replacing an existing one removes it first (a symlink is replaced, not
// written through). Absolute names and ".." are refused. Modes (set-id
// bits included), owners and mtimes are kept; directories get theirs
// after their contents. Devices and sockets are skipped (devtmpfs provides
// /dev), FIFOs are made; hard-link entries are written as copies.
func Extract(dir string, r io.Reader) (ExtractResult, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return ExtractResult{}, fmt.Errorf("open root: %w", err)
	}
	defer root.Close()
	x := &extractor{uid: os.Geteuid(), gid: os.Getegid(), dirs: dirStack{stack: []*openDir{{r: root}}}}
	defer x.dirs.closeAll()
	br := bufio.NewReaderSize(r, 1<<20)
	archives := 0
	for {
		more, err := skipNUL(br)
		if err != nil {
			return x.res, fmt.Errorf("read image: %w", err)
		}
		if !more {
			break
		}
		archives++
		if err := x.archive(br); err != nil {
			return x.res, err
		}
	}
	if archives == 0 {
		return x.res, errors.New("image: no cpio archive in the stream")
	}
	return x.res, x.finishDirs(root)
}

type extractor struct {
	uid, gid int // who creates the files
	dirs     dirStack
	res      ExtractResult
	pending  []dirAttrs // directories whose mode and mtime are set last
}

type dirAttrs struct {
	name  string
	perm  fs.FileMode
	mtime time.Time
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// skipNUL discards the NUL padding between archives; it reports whether
// more data follows.
func skipNUL(br *bufio.Reader) (bool, error) {
	for {
		b, err := br.Peek(1)
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if b[0] != 0 {
			return true, nil
		}
		if _, err := br.Discard(1); err != nil {
			return false, err
		}
	}
}

func (x *extractor) archive(br *bufio.Reader) error {
	rd := cpio.NewReader(br)
	for {
		hdr, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return nil // TRAILER!!!
		}
		if err != nil {
			return fmt.Errorf("image: %w", err)
		}
		if err := x.entry(hdr, rd); err != nil {
			return err
		}
		// the rest of an entry's data (a skipped type) before the next header
		if _, err := io.Copy(io.Discard, rd); err != nil {
			return fmt.Errorf("image: %s: %w", hdr.Name, err)
		}
	}
}

func perm(m cpio.FileMode) fs.FileMode {
	p := fs.FileMode(m & cpio.ModePerm)
	if m&cpio.ModeSetuid != 0 {
		p |= fs.ModeSetuid
	}
	if m&cpio.ModeSetgid != 0 {
		p |= fs.ModeSetgid
	}
	if m&cpio.ModeSticky != 0 {
		p |= fs.ModeSticky
	}
	return p
}

func (x *extractor) entry(hdr *cpio.Header, rd io.Reader) error {
	name, err := apply.CleanName(hdr.Name)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if name == "" {
		x.res.Skipped++ // the root itself: the tmpfs mount's
		return nil
	}
	typ := hdr.Mode & cpio.ModeType
	switch typ {
	case cpio.TypeReg, cpio.TypeDir, cpio.TypeSymlink, cpio.TypeFifo:
	default:
		x.res.Skipped++
		return nil
	}
	d, err := x.dirs.get(path.Dir(name))
	if err != nil {
		return fmt.Errorf("image: %s: %w", name, err)
	}
	base := path.Base(name)
	// Into a fresh tree: create first, make room only when something is
	// there already (a later archive's entry, as the kernel has it).
	create := func() error {
		switch typ {
		case cpio.TypeDir:
			return x.dir(d, name, base, hdr)
		case cpio.TypeReg:
			return x.file(d, base, hdr, rd)
		case cpio.TypeSymlink:
			return x.symlink(d, base, hdr)
		default:
			return x.fifo(d, base, hdr)
		}
	}
	err = create()
	if errors.Is(err, fs.ErrExist) {
		if err = x.makeRoom(d, base, typ == cpio.TypeDir); err == nil {
			err = create()
		}
	}
	if err != nil {
		return fmt.Errorf("image: %s: %w", name, err)
	}
	return nil
}

// makeRoom removes what is at base unless it is a directory and a
// directory comes (a later archive's entry wins, as the kernel has it).
func (x *extractor) makeRoom(d *openDir, base string, dir bool) error {
	fi, err := d.r.Lstat(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if dir {
			return nil
		}
		x.dirs.forget(d, base)
		return d.r.RemoveAll(base)
	}
	return d.r.Remove(base)
}

func (x *extractor) dir(d *openDir, name, base string, hdr *cpio.Header) error {
	if err := d.r.Mkdir(base, 0o700); errors.Is(err, fs.ErrExist) {
		if fi, lerr := d.r.Lstat(base); lerr != nil || !fi.IsDir() {
			return err // not a directory there: make room
		}
	} else if err != nil {
		return err
	}
	if err := d.r.Lchown(base, hdr.Uid, hdr.Guid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	// Writable while it is filled; the mode and mtime come last.
	x.pending = append(x.pending, dirAttrs{name: name, perm: perm(hdr.Mode), mtime: hdr.ModTime})
	x.res.Dirs++
	return nil
}

func (x *extractor) file(d *openDir, base string, hdr *cpio.Header, rd io.Reader) (err error) {
	f, err := d.r.OpenFile(base, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	bp := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(onlyWriter{f}, io.LimitReader(rd, hdr.Size), *bp)
	copyBufs.Put(bp)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if n != hdr.Size {
		return fmt.Errorf("write: %d of %d bytes: %w", n, hdr.Size, io.ErrUnexpectedEOF)
	}
	// A new file is ours already (its directory is still 0700, never
	// set-group-ID, while it is filled: see finishDirs).
	if hdr.Uid != x.uid || hdr.Guid != x.gid {
		if err := f.Chown(hdr.Uid, hdr.Guid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := f.Chmod(perm(hdr.Mode)); err != nil { // after chown, which clears set-id bits
		return fmt.Errorf("chmod: %w", err)
	}
	// By name in the directory we hold: base is the file just created.
	if err := d.r.Chtimes(base, hdr.ModTime, hdr.ModTime); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	x.res.Files++
	x.res.Bytes += n
	return nil
}

// onlyWriter hides *os.File's ReadFrom, which would copy through its own
// (smaller) buffer path.
type onlyWriter struct{ io.Writer }

func (x *extractor) symlink(d *openDir, base string, hdr *cpio.Header) error {
	if err := d.r.Symlink(hdr.Linkname, base); err != nil {
		return err
	}
	if err := d.r.Lchown(base, hdr.Uid, hdr.Guid); err != nil {
		return fmt.Errorf("lchown: %w", err)
	}
	if fd, err := d.fd(); err == nil {
		ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
		_ = unix.UtimesNanoAt(fd, base, ts, unix.AT_SYMLINK_NOFOLLOW) // cosmetic
	}
	x.res.Symlinks++
	return nil
}

func (x *extractor) fifo(d *openDir, base string, hdr *cpio.Header) error {
	fd, err := d.fd()
	if err != nil {
		return err
	}
	if err := unix.Mknodat(fd, base, unix.S_IFIFO|uint32(hdr.Mode&cpio.ModePerm), 0); err != nil {
		return fmt.Errorf("mkfifo: %w", err)
	}
	if err := d.r.Lchown(base, hdr.Uid, hdr.Guid); err != nil {
		return fmt.Errorf("lchown: %w", err)
	}
	x.res.Other++
	return nil
}

// finishDirs sets directories' modes and mtimes, deepest first, so that
// filling a directory does not change its mtime afterwards and a
// read-only directory could be filled.
func (x *extractor) finishDirs(root *os.Root) error {
	x.dirs.closeAll()
	for i := len(x.pending) - 1; i >= 0; i-- {
		a := x.pending[i]
		fi, err := root.Lstat(a.name)
		if err != nil || !fi.IsDir() {
			continue // replaced by a later entry
		}
		if err := root.Chmod(a.name, a.perm); err != nil {
			return fmt.Errorf("image: %s: chmod: %w", a.name, err)
		}
		if err := root.Chtimes(a.name, a.mtime, a.mtime); err != nil {
			return fmt.Errorf("image: %s: set mtime: %w", a.name, err)
		}
	}
	x.pending = nil
	return nil
}

// dirStack keeps the directories of the current path open (archives list
// a directory's entries after it, depth first), so an entry costs one
// lookup in its open parent instead of a walk from the root.
type dirStack struct {
	stack []*openDir // stack[0] is the root
}

type openDir struct {
	path string // "" for the root
	r    *os.Root
	f    *os.File // the directory itself, for *at calls (lazy)
}

func (d *openDir) fd() (int, error) {
	if d.f == nil {
		f, err := d.r.Open(".")
		if err != nil {
			return -1, err
		}
		d.f = f
	}
	return int(d.f.Fd()), nil
}

func (d *openDir) close() {
	if d.f != nil {
		d.f.Close()
	}
	if d.path != "" {
		d.r.Close()
	}
}

func within(dir, p string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

// get returns the open directory dir (relative, "." for the root),
// opening (and creating, 0755, when missing) each component below the
// deepest open ancestor. A component that is a symlink or not a
// directory is refused.
func (s *dirStack) get(dir string) (*openDir, error) {
	if dir == "." {
		dir = ""
	}
	for len(s.stack) > 1 && !within(s.stack[len(s.stack)-1].path, dir) {
		s.pop()
	}
	top := s.stack[len(s.stack)-1]
	if top.path == dir {
		return top, nil
	}
	rest := strings.TrimPrefix(dir, top.path)
	rest = strings.TrimPrefix(rest, "/")
	for _, comp := range strings.Split(rest, "/") {
		fi, err := top.r.Lstat(comp)
		if errors.Is(err, fs.ErrNotExist) {
			if err := top.r.Mkdir(comp, 0o755); err != nil {
				return nil, fmt.Errorf("create parent %s: %w", path.Join(top.path, comp), err)
			}
			fi, err = top.r.Lstat(comp)
		}
		if err != nil {
			return nil, err
		}
		p := path.Join(top.path, comp)
		if fi.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("parent %s is a symlink: %w", p, ErrUnsafePath)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("parent %s is not a directory", p)
		}
		sub, err := top.r.OpenRoot(comp)
		if err != nil {
			return nil, err
		}
		top = &openDir{path: p, r: sub}
		s.stack = append(s.stack, top)
	}
	return top, nil
}

func (s *dirStack) pop() {
	top := s.stack[len(s.stack)-1]
	top.close()
	s.stack = s.stack[:len(s.stack)-1]
}

// forget closes the open directories at or below d/base (about to be
// removed).
func (s *dirStack) forget(d *openDir, base string) {
	p := path.Join(d.path, base)
	for len(s.stack) > 1 && within(p, s.stack[len(s.stack)-1].path) {
		s.pop()
	}
}

func (s *dirStack) closeAll() {
	for len(s.stack) > 1 {
		s.pop()
	}
	if len(s.stack) == 1 && s.stack[0].f != nil {
		s.stack[0].f.Close()
		s.stack[0].f = nil
	}
}
