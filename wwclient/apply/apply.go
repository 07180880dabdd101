// Package apply writes an overlay archive (gzip-compressed newc cpio,
// possibly several gzip members and several concatenated cpio archives)
// into a target root directory, atomically per file.
//
// Rules:
//   - every path stays under the root: absolute names and ".." are refused,
//     and all file system access goes through os.Root, which also refuses to
//     follow symlinks out of the root;
//   - regular files are written to a temporary file beside the target
//     (".NAME.wwtmp") and renamed into place, with mode, owner and mtime set
//     before the rename, so a reader (or a crash) sees the old or the new
//     file, never a mix;
//   - a regular file whose content, mode and owner already match is not
//     touched at all (same inode, same mtime);
//   - symlinks are replaced the same way (temporary link + rename);
//   - an existing symlink that points to a directory is kept when the archive
//     has a directory of that name (merged-/usr images: lib -> usr/lib);
//   - device nodes, FIFOs and sockets are skipped; hard links are written as
//     independent copies;
//   - entry sizes, the total size and the number of entries are bounded.
package apply

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/cavaliergopher/cpio"
)

// Defaults for Options limits.
const (
	DefaultMaxEntrySize = 256 << 20 // 256 MiB
	DefaultMaxTotalSize = 2 << 30   // 2 GiB
	DefaultMaxEntries   = 200000
	// files up to this size are compared in memory before anything is
	// written; bigger ones are streamed to the temporary file and hashed
	compareInMemory = 1 << 20
)

// Action is what happened to one entry.
type Action int

// Actions reported to Options.Progress.
const (
	Written   Action = iota // regular file created or replaced
	Unchanged               // regular file or symlink already as wanted
	Dir                     // directory created or its mode/owner fixed
	DirOK                   // directory already as wanted
	Symlink                 // symlink created or replaced
	Skipped                 // device node, FIFO, socket, or the root itself
)

func (a Action) String() string {
	switch a {
	case Written:
		return "written"
	case Unchanged:
		return "unchanged"
	case Dir:
		return "dir"
	case DirOK:
		return "dir-ok"
	case Symlink:
		return "symlink"
	case Skipped:
		return "skipped"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Options tune Apply. The zero value is usable.
type Options struct {
	MaxEntrySize int64 // bytes; default DefaultMaxEntrySize
	MaxTotalSize int64 // bytes of file content in total; default DefaultMaxTotalSize
	MaxEntries   int   // default DefaultMaxEntries
	// NoOwner skips chown (use when not running as root); owner is then
	// also ignored when deciding whether a file is unchanged.
	NoOwner bool
	// Progress, when set, is called after each entry has been dealt with.
	Progress func(name string, a Action)
}

// Result counts what Apply did.
type Result struct {
	Written, Unchanged, Dirs, Symlinks, Skipped int
	Bytes                                       int64 // content bytes read
}

// Changed reports whether anything on disk was modified.
func (r Result) Changed() bool { return r.Written > 0 || r.Symlinks > 0 || r.Dirs > 0 }

// ErrUnsafePath is returned (wrapped) for an absolute or ".." entry name.
var ErrUnsafePath = errors.New("unsafe path")

// ErrTooLarge is returned (wrapped) when a limit is exceeded.
var ErrTooLarge = errors.New("too large")

// ApplyFile opens the archive at archivePath and applies it to root.
func ApplyFile(root, archivePath string, opts Options) (Result, error) {
	f, err := os.Open(archivePath)
	if err != nil {
		return Result{}, fmt.Errorf("open archive: %w", err)
	}
	defer f.Close()
	return Apply(root, f, opts)
}

// Apply reads an overlay archive from r and writes it under the directory
// root (created if missing). It stops at the first error; entries already
// applied stay applied (each one atomically).
func Apply(root string, r io.Reader, opts Options) (Result, error) {
	if opts.MaxEntrySize <= 0 {
		opts.MaxEntrySize = DefaultMaxEntrySize
	}
	if opts.MaxTotalSize <= 0 {
		opts.MaxTotalSize = DefaultMaxTotalSize
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return Result{}, fmt.Errorf("create root: %w", err)
	}
	rt, err := os.OpenRoot(root)
	if err != nil {
		return Result{}, fmt.Errorf("open root: %w", err)
	}
	defer rt.Close()

	src, err := decompress(r)
	if err != nil {
		return Result{}, err
	}
	a := &applier{root: rt, opts: opts}
	err = a.run(src)
	return a.res, err
}

// decompress returns a reader of the cpio stream: gzip (all members) when
// the input starts with the gzip magic, else the input itself.
func decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(2)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty archive")
		}
		return nil, fmt.Errorf("read archive: %w", err)
	}
	if magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil // multistream by default: concatenated members are read as one
	}
	return br, nil
}

type applier struct {
	root    *os.Root
	opts    Options
	res     Result
	entries int
	// hard links of the current archive: inode -> names still waiting for
	// the entry that carries the data
	pendingLinks map[int64][]pendingLink
}

type pendingLink struct {
	name string
	hdr  cpio.Header
}

// countingReader counts bytes read, to tell a cpio trailer from a bare EOF.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (a *applier) run(src io.Reader) error {
	cr := &countingReader{r: src}
	br := bufio.NewReaderSize(cr, 64<<10)
	archives := 0
	for {
		// archives are separated (and followed) by NUL padding
		more, err := skipNUL(br)
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if !more {
			if archives == 0 {
				return errors.New("no cpio archive in input")
			}
			return nil
		}
		archives++
		if err := a.archive(br, cr, archives); err != nil {
			return err
		}
	}
}

// skipNUL discards NUL bytes; it reports whether more data follows.
func skipNUL(br *bufio.Reader) (bool, error) {
	for {
		buf, err := br.Peek(1)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return false, nil
			}
			return false, err
		}
		if buf[0] != 0 {
			return true, nil
		}
		n := br.Buffered()
		b, _ := br.Peek(n)
		i := bytes.IndexFunc(b, func(r rune) bool { return r != 0 })
		if i < 0 {
			i = n
		}
		if _, err := br.Discard(i); err != nil {
			return false, err
		}
	}
}

func (a *applier) archive(br *bufio.Reader, cr *countingReader, num int) error {
	rd := cpio.NewReader(br)
	a.pendingLinks = map[int64][]pendingLink{}
	for {
		// consume what is left of the previous entry, so that Next only
		// skips padding and the position tells a trailer from a bare EOF
		if _, err := io.Copy(io.Discard, rd); err != nil {
			return fmt.Errorf("archive %d: %w", num, err)
		}
		before := cr.n - int64(br.Buffered())
		hdr, err := rd.Next()
		if errors.Is(err, io.EOF) {
			after := cr.n - int64(br.Buffered())
			if after-before < 110 { // no trailer header was read
				return fmt.Errorf("archive %d: truncated (no cpio trailer)", num)
			}
			return a.flushLinks()
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("archive %d: truncated: %w", num, err)
			}
			return fmt.Errorf("archive %d: %w", num, err)
		}
		a.entries++
		if a.entries > a.opts.MaxEntries {
			return fmt.Errorf("more than %d entries: %w", a.opts.MaxEntries, ErrTooLarge)
		}
		if err := a.entry(hdr, rd); err != nil {
			return err
		}
	}
}

// CleanName validates an archive entry name and returns it relative to
// the root ("" for the root itself).
func CleanName(name string) (string, error) {
	n := name
	for strings.HasPrefix(n, "./") {
		n = n[2:]
	}
	if n == "." || n == "" {
		return "", nil
	}
	if strings.HasPrefix(n, "/") {
		return "", fmt.Errorf("%q: absolute name: %w", name, ErrUnsafePath)
	}
	if strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("%q: NUL in name: %w", name, ErrUnsafePath)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("%q: '..' in name: %w", name, ErrUnsafePath)
		}
	}
	c := path.Clean(n)
	if c == "." {
		return "", nil
	}
	return c, nil
}

func (a *applier) entry(hdr *cpio.Header, rd io.Reader) error {
	name, err := CleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" {
		a.report(hdr.Name, Skipped)
		return nil
	}
	typ := hdr.Mode & cpio.ModeType
	if typ == cpio.TypeReg || typ == 0 {
		if hdr.Size > a.opts.MaxEntrySize {
			return fmt.Errorf("%s: %d bytes, limit %d: %w", name, hdr.Size, a.opts.MaxEntrySize, ErrTooLarge)
		}
		if a.res.Bytes+hdr.Size > a.opts.MaxTotalSize {
			return fmt.Errorf("%s: total content over %d bytes: %w", name, a.opts.MaxTotalSize, ErrTooLarge)
		}
	}
	if dir := path.Dir(name); dir != "." {
		if err := a.mkdirParents(dir); err != nil {
			return err
		}
	}
	switch typ {
	case cpio.TypeDir:
		act, err := a.dir(name, hdr)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if act == Dir {
			a.res.Dirs++
		}
		a.report(name, act)
	case cpio.TypeSymlink:
		act, err := a.symlink(name, hdr)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if act == Symlink {
			a.res.Symlinks++
		} else {
			a.res.Unchanged++
		}
		a.report(name, act)
	case cpio.TypeReg, 0:
		if hdr.Links > 1 && hdr.Size == 0 {
			// hard link without data: wait for the entry that carries it
			a.pendingLinks[hdr.Inode] = append(a.pendingLinks[hdr.Inode], pendingLink{name: name, hdr: *hdr})
			return nil
		}
		if err := a.regularEntry(name, hdr, rd); err != nil {
			return err
		}
		if hdr.Links > 1 {
			if err := a.resolveLinks(hdr.Inode, name); err != nil {
				return err
			}
		}
	default:
		a.res.Skipped++
		a.report(name, Skipped)
	}
	return nil
}

func (a *applier) regularEntry(name string, hdr *cpio.Header, rd io.Reader) error {
	if a.res.Bytes+hdr.Size > a.opts.MaxTotalSize { // hard-link copies count too
		return fmt.Errorf("%s: total content over %d bytes: %w", name, a.opts.MaxTotalSize, ErrTooLarge)
	}
	act, err := a.regular(name, hdr, rd)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	a.res.Bytes += hdr.Size
	if act == Written {
		a.res.Written++
	} else {
		a.res.Unchanged++
	}
	a.report(name, act)
	return nil
}

// resolveLinks writes the hard links waiting for inode as copies of src.
func (a *applier) resolveLinks(inode int64, src string) error {
	links := a.pendingLinks[inode]
	delete(a.pendingLinks, inode)
	for _, l := range links {
		f, err := a.root.Open(src)
		if err != nil {
			return fmt.Errorf("%s: hard link source %s: %w", l.name, src, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", l.name, err)
		}
		h := l.hdr
		h.Size = fi.Size()
		err = a.regularEntry(l.name, &h, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// flushLinks writes hard links whose data never came (empty files).
func (a *applier) flushLinks() error {
	for _, links := range a.pendingLinks {
		for _, l := range links {
			h := l.hdr
			if err := a.regularEntry(l.name, &h, bytes.NewReader(nil)); err != nil {
				return err
			}
		}
	}
	a.pendingLinks = nil
	return nil
}

func (a *applier) report(name string, act Action) {
	if a.opts.Progress != nil {
		a.opts.Progress(name, act)
	}
}

// mkdirParents creates missing parent directories (0755). An existing
// symlink to a directory is followed (inside the root).
func (a *applier) mkdirParents(dir string) error {
	if fi, err := a.root.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	if err := a.root.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create parent %s: %w", dir, err)
	}
	return nil
}

func fileMode(m cpio.FileMode) fs.FileMode {
	fm := fs.FileMode(m & cpio.ModePerm)
	if m&cpio.ModeSetuid != 0 {
		fm |= fs.ModeSetuid
	}
	if m&cpio.ModeSetgid != 0 {
		fm |= fs.ModeSetgid
	}
	if m&cpio.ModeSticky != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

const permBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

func (a *applier) ownerMatches(fi fs.FileInfo, hdr *cpio.Header) bool {
	if a.opts.NoOwner {
		return true
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == hdr.Uid && int(st.Gid) == hdr.Guid
}

func (a *applier) dir(name string, hdr *cpio.Header) (Action, error) {
	perm := fileMode(hdr.Mode)
	fi, err := a.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := a.root.Mkdir(name, 0o700); err != nil {
			return 0, err
		}
		return Dir, a.fixDir(name, perm, hdr)
	case err != nil:
		return 0, err
	case fi.IsDir():
		if fi.Mode()&permBits == perm && a.ownerMatches(fi, hdr) {
			return DirOK, nil
		}
		return Dir, a.fixDir(name, perm, hdr)
	case fi.Mode()&fs.ModeSymlink != 0:
		if st, err := a.root.Stat(name); err == nil && st.IsDir() {
			return DirOK, nil // keep lib -> usr/lib and the like
		}
		fallthrough
	default:
		if err := a.root.Remove(name); err != nil {
			return 0, fmt.Errorf("replace %s with a directory: %w", fi.Mode().Type(), err)
		}
		if err := a.root.Mkdir(name, 0o700); err != nil {
			return 0, err
		}
		return Dir, a.fixDir(name, perm, hdr)
	}
}

func (a *applier) fixDir(name string, perm fs.FileMode, hdr *cpio.Header) error {
	if !a.opts.NoOwner {
		if err := a.root.Lchown(name, hdr.Uid, hdr.Guid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := a.root.Chmod(name, perm); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}

// tempName is the temporary name used beside name.
func tempName(name string) string {
	dir, base := path.Split(name)
	if len(base) > 200 {
		sum := sha256.Sum256([]byte(base))
		base = fmt.Sprintf("%x", sum[:12])
	}
	return dir + "." + base + ".wwtmp"
}

// removeStale removes a temporary file left behind by an interrupted apply.
func (a *applier) removeStale(tmp string) error {
	if err := a.root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", tmp, err)
	}
	return nil
}

// prepareReplace makes room for a non-directory at name: an existing
// directory is removed (rename cannot replace it).
func (a *applier) prepareReplace(name string, fi fs.FileInfo) error {
	if fi != nil && fi.IsDir() {
		if err := a.root.RemoveAll(name); err != nil {
			return fmt.Errorf("replace directory: %w", err)
		}
	}
	return nil
}

func (a *applier) symlink(name string, hdr *cpio.Header) (Action, error) {
	fi, err := a.root.Lstat(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	if err != nil {
		fi = nil
	}
	if fi != nil && fi.Mode()&fs.ModeSymlink != 0 && a.ownerMatches(fi, hdr) {
		if cur, err := a.root.Readlink(name); err == nil && cur == hdr.Linkname {
			return Unchanged, nil
		}
	}
	tmp := tempName(name)
	if err := a.removeStale(tmp); err != nil {
		return 0, err
	}
	if err := a.root.Symlink(hdr.Linkname, tmp); err != nil {
		return 0, fmt.Errorf("symlink: %w", err)
	}
	if !a.opts.NoOwner {
		if err := a.root.Lchown(tmp, hdr.Uid, hdr.Guid); err != nil {
			_ = a.root.Remove(tmp)
			return 0, fmt.Errorf("lchown: %w", err)
		}
	}
	if err := a.prepareReplace(name, fi); err != nil {
		_ = a.root.Remove(tmp)
		return 0, err
	}
	if err := a.root.Rename(tmp, name); err != nil {
		_ = a.root.Remove(tmp)
		return 0, fmt.Errorf("rename into place: %w", err)
	}
	return Symlink, nil
}

func (a *applier) regular(name string, hdr *cpio.Header, rd io.Reader) (Action, error) {
	perm := fileMode(hdr.Mode)
	content := io.LimitReader(rd, hdr.Size)
	fi, err := a.root.Lstat(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	if err != nil {
		fi = nil
	}
	tmp := tempName(name)
	candidate := fi != nil && fi.Mode().IsRegular() && fi.Size() == hdr.Size &&
		fi.Mode()&permBits == perm && a.ownerMatches(fi, hdr)

	var sum []byte
	if candidate && hdr.Size <= compareInMemory {
		buf := make([]byte, hdr.Size)
		if _, err := io.ReadFull(content, buf); err != nil {
			return 0, fmt.Errorf("read entry: %w", truncated(err))
		}
		cur, err := a.root.ReadFile(name)
		if err == nil && bytes.Equal(cur, buf) {
			return Unchanged, a.removeStale(tmp)
		}
		content = bytes.NewReader(buf)
	} else if candidate {
		h := sha256.New()
		if err := a.writeTemp(tmp, io.TeeReader(content, h), hdr, perm); err != nil {
			return 0, err
		}
		sum = h.Sum(nil)
		if same, err := a.hashEqual(name, sum); err == nil && same {
			if err := a.root.Remove(tmp); err != nil {
				return 0, fmt.Errorf("remove temporary file: %w", err)
			}
			return Unchanged, nil
		}
	}
	if sum == nil {
		if err := a.writeTemp(tmp, content, hdr, perm); err != nil {
			return 0, err
		}
	}
	if err := a.prepareReplace(name, fi); err != nil {
		_ = a.root.Remove(tmp)
		return 0, err
	}
	if err := a.root.Rename(tmp, name); err != nil {
		_ = a.root.Remove(tmp)
		return 0, fmt.Errorf("rename into place: %w", err)
	}
	return Written, nil
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (a *applier) hashEqual(name string, sum []byte) (bool, error) {
	f, err := a.root.Open(name)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	return bytes.Equal(h.Sum(nil), sum), nil
}

// writeTemp writes exactly hdr.Size bytes from r to tmp and sets owner,
// mode and mtime; on error tmp is removed.
func (a *applier) writeTemp(tmp string, r io.Reader, hdr *cpio.Header, perm fs.FileMode) (err error) {
	if err := a.removeStale(tmp); err != nil {
		return err
	}
	f, err := a.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			_ = a.root.Remove(tmp)
		}
	}()
	n, err := io.Copy(f, r)
	if err != nil {
		return fmt.Errorf("write: %w", truncated(err))
	}
	if n != hdr.Size {
		return fmt.Errorf("write: %d of %d bytes: %w", n, hdr.Size, io.ErrUnexpectedEOF)
	}
	if !a.opts.NoOwner {
		if err := f.Chown(hdr.Uid, hdr.Guid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	// after chown, which clears set-id bits
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	mt := hdr.ModTime
	if mt.IsZero() {
		mt = time.Unix(0, 0)
	}
	if err := a.root.Chtimes(tmp, mt, mt); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	return nil
}
