package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Whiteout markers of the OCI image spec (and Docker before it).
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// UnsafeEntryError is a layer entry refused because it would land outside
// the image root (or is otherwise not a path inside it).
type UnsafeEntryError struct {
	Layer int // 1-based
	Name  string
	Msg   string
}

func (e *UnsafeEntryError) Error() string {
	return fmt.Sprintf("layer %d: entry %q refused: %s", e.Layer, e.Name, e.Msg)
}

// applier writes the entries of one layer after another into an image root.
// Every path is resolved through os.Root (no symlink or ".." can leave the
// root, absolute symlinks are never followed) and the final component is
// created with *at system calls on its parent's descriptor, never following
// what is already there.
type applier struct {
	root    *os.Root
	lim     *limits
	layer   int
	written map[string]bool // paths the current layer wrote (opaque whiteouts keep them)
	files   int64
	bytes   int64
	// The last parent directory opened (tars list a directory's files
	// together): reused until anything is removed or replaced that could
	// change what its path resolves to.
	lastDir    string
	lastParent *os.File
}

// parent opens dir (creating it and its parents) through the root, or
// returns the cached descriptor.
func (a *applier) parent(dir string) (*os.File, error) {
	if a.lastParent != nil && a.lastDir == dir {
		return a.lastParent, nil
	}
	a.forgetParent()
	if err := a.root.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := a.root.Open(dir)
	if err != nil {
		return nil, err
	}
	a.lastDir, a.lastParent = dir, f
	return f, nil
}

func (a *applier) forgetParent() {
	if a.lastParent != nil {
		a.lastParent.Close()
		a.lastParent = nil
	}
}

// cleanName turns a tar entry name into a path relative to the root.
// "" means the root itself. Absolute names and ".." components are refused.
func (a *applier) cleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", &UnsafeEntryError{a.layer, name, "absolute path"}
	}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
		case "..":
			return "", &UnsafeEntryError{a.layer, name, `".." leaves the image root`}
		default:
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/"), nil
}

// applyLayer extracts one layer's tar stream.
func (a *applier) applyLayer(r io.Reader) error {
	a.written = map[string]bool{}
	defer a.forgetParent()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("layer %d: read tar: %w", a.layer, err)
		}
		if err := a.entry(hdr, tr); err != nil {
			return err
		}
	}
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	name, err := a.cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if err := a.lim.entry(); err != nil {
		return fmt.Errorf("layer %d: %s: %w", a.layer, hdr.Name, err)
	}
	if name == "" {
		return nil // the root directory itself: ours, 0755 root
	}
	dir, base := splitDir(name)
	if base == whiteoutOpaque || strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(hdr, dir, base)
	}
	pfd, isDir, err := a.replace(hdr, name, dir, base)
	if err != nil {
		return err
	}
	created, err := a.create(hdr, r, name, pfd, base, isDir)
	if err != nil || !created {
		return err
	}
	a.files++
	// The entry and its parents are this layer's: an opaque whiteout in the
	// same layer keeps them.
	for p := name; p != "." && !a.written[p]; p = path.Dir(p) {
		a.written[p] = true
	}
	return nil
}

// splitDir splits a clean name into its directory ("." at the top) and base.
func splitDir(name string) (dir, base string) {
	dir, base = path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	return dir, base
}

// whiteout applies a whiteout entry: opaque (hide the lower layers' dir
// contents) or one removed path.
func (a *applier) whiteout(hdr *tar.Header, dir, base string) error {
	a.forgetParent()
	if base == whiteoutOpaque {
		return a.opaque(dir, hdr.Name)
	}
	target := base[len(whiteoutPrefix):]
	if target == "" || target == "." || target == ".." {
		return &UnsafeEntryError{a.layer, hdr.Name, "whiteout of a path outside its directory"}
	}
	if err := a.root.RemoveAll(path.Join(dir, target)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return a.refuse(hdr.Name, err)
	}
	return nil
}

// replace opens the entry's parent and removes what is there, without
// following it (a symlink left by a lower layer is removed, never written
// through). A directory over a directory is kept, so its lower-layer
// contents stay (isDir).
func (a *applier) replace(hdr *tar.Header, name, dir, base string) (pfd int, isDir bool, err error) {
	parent, err := a.parent(dir)
	if err != nil {
		return 0, false, a.refuse(hdr.Name, err)
	}
	pfd = int(parent.Fd())
	var st unix.Stat_t
	exists := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	isDir = exists && st.Mode&unix.S_IFMT == unix.S_IFDIR
	if exists && st.Mode&unix.S_IFMT != unix.S_IFREG {
		// A directory or symlink going away or changing could be on the
		// cached parent's path; a regular file cannot.
		a.forgetParent()
		if parent, err = a.parent(dir); err != nil {
			return 0, false, a.refuse(hdr.Name, err)
		}
		pfd = int(parent.Fd())
	}
	if exists && !(hdr.Typeflag == tar.TypeDir && isDir) {
		if isDir {
			err = a.root.RemoveAll(name)
		} else {
			err = unix.Unlinkat(pfd, base, 0)
		}
		if err != nil {
			return 0, false, a.fail(hdr.Name, "replace", err)
		}
	}
	return pfd, isDir, nil
}

// create makes the entry base in the directory pfd, by type; created is
// false for types that make no file.
func (a *applier) create(hdr *tar.Header, r io.Reader, name string, pfd int, base string, isDir bool) (created bool, err error) {
	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		return true, a.createDir(hdr, pfd, base, isDir, mode)
	case tar.TypeReg, tar.TypeGNUSparse: // archive/tar reports TypeRegA as TypeReg, and fills a sparse file's holes
		return true, a.createFile(hdr, r, name, pfd, base, mode)
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return true, a.fail(hdr.Name, "symlink", err)
		}
		return true, a.pathMeta(pfd, base, hdr, mode, false)
	case tar.TypeLink:
		return true, a.createLink(hdr, pfd, base)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(pfd, base, kind|mode, int(dev)); err != nil {
			return true, a.fail(hdr.Name, "mknod", err)
		}
		return true, a.pathMeta(pfd, base, hdr, mode, true)
	}
	return false, nil // PAX/GNU metadata entries are consumed by archive/tar; others have no file
}

// createDir makes a directory (unless one is kept) and sets its metadata.
func (a *applier) createDir(hdr *tar.Header, pfd int, base string, isDir bool, mode uint32) error {
	if !isDir {
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return a.fail(hdr.Name, "mkdir", err)
		}
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return a.fail(hdr.Name, "open", err)
	}
	defer unix.Close(fd)
	return a.fdMeta(fd, hdr, mode)
}

// createFile writes a regular file within the limits, then its metadata.
func (a *applier) createFile(hdr *tar.Header, r io.Reader, name string, pfd int, base string, mode uint32) error {
	// Refused before a byte is written when it would not fit (a sparse
	// entry counts at its full size: it is written in full).
	if err := a.lim.need(hdr.Size); err != nil {
		return fmt.Errorf("layer %d: %s: %w", a.layer, hdr.Name, err)
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return a.fail(hdr.Name, "create", err)
	}
	f := os.NewFile(uintptr(fd), name)
	n, err := io.Copy(&limitedWriter{f: f, lim: a.lim}, r)
	a.bytes += n
	if err != nil {
		err = a.fail(hdr.Name, "copy", err)
	}
	if err == nil {
		err = a.fdMeta(fd, hdr, mode)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = a.fail(hdr.Name, "close", cerr)
	}
	return err
}

// createLink makes a hard link to an entry already in the image.
func (a *applier) createLink(hdr *tar.Header, pfd int, base string) error {
	target, err := a.cleanName(hdr.Linkname)
	if err != nil || target == "" {
		return &UnsafeEntryError{a.layer, hdr.Name, fmt.Sprintf("hard link to %q outside the image root", hdr.Linkname)}
	}
	tdir, tbase := splitDir(target)
	tparent, err := a.root.Open(tdir)
	if err != nil {
		return a.refuse(hdr.Name, err)
	}
	err = unix.Linkat(int(tparent.Fd()), tbase, pfd, base, 0)
	tparent.Close()
	if err != nil {
		return a.fail(hdr.Name, "link to "+hdr.Linkname, err)
	}
	return nil
}

// fdMeta sets owner, mode (after chown, which clears set-id bits), xattrs
// and times on an open file or directory.
func (a *applier) fdMeta(fd int, hdr *tar.Header, mode uint32) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return a.fail(hdr.Name, "chown", err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return a.fail(hdr.Name, "chmod", err)
	}
	for k, v := range xattrs(hdr) {
		if err := unix.Fsetxattr(fd, k, []byte(v), 0); err != nil {
			return a.fail(hdr.Name, "set xattr "+k, err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(hdr.AccessTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if hdr.AccessTime.IsZero() {
		ts[0] = ts[1]
	}
	return a.failIf(hdr.Name, "set times", unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH))
}

// pathMeta is fdMeta for entries that cannot be opened for writing
// (symlinks, device nodes, FIFOs): by name on the parent, never following.
func (a *applier) pathMeta(pfd int, base string, hdr *tar.Header, mode uint32, chmod bool) error {
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return a.fail(hdr.Name, "chown", err)
	}
	if chmod {
		if err := unix.Fchmodat(pfd, base, mode, 0); err != nil {
			return a.fail(hdr.Name, "chmod", err)
		}
	}
	// The parent's /proc/self/fd link is the confined directory; the last
	// component is not followed by lsetxattr.
	p := "/proc/self/fd/" + strconv.Itoa(pfd) + "/" + base
	for k, v := range xattrs(hdr) {
		if err := unix.Lsetxattr(p, k, []byte(v), 0); err != nil {
			return a.fail(hdr.Name, "set xattr "+k, err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	return a.failIf(hdr.Name, "set times", unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW))
}

func xattrs(hdr *tar.Header) map[string]string {
	var out map[string]string
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if out == nil {
				out = map[string]string{}
			}
			out[name] = v
		}
	}
	return out
}

// opaque empties dir of everything lower layers put there.
func (a *applier) opaque(dir, entry string) error {
	d, err := a.root.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return a.refuse(entry, err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return a.fail(entry, "read dir", err)
	}
	for _, n := range names {
		child := path.Join(dir, n)
		if a.keptByLayer(child) {
			continue
		}
		if err := a.root.RemoveAll(child); err != nil {
			return a.fail(entry, "opaque whiteout", err)
		}
	}
	return nil
}

func (a *applier) keptByLayer(p string) bool { return a.written[p] }

// refuse turns an os.Root resolution failure into an UnsafeEntryError when
// it is one (a path through a symlink that leaves the root).
func (a *applier) refuse(name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && (strings.Contains(pe.Err.Error(), "escapes") || errors.Is(pe.Err, unix.ELOOP)) {
		return &UnsafeEntryError{a.layer, name, "path passes through a symlink that leaves the image root"}
	}
	if strings.Contains(err.Error(), "path escapes from parent") {
		return &UnsafeEntryError{a.layer, name, "path passes through a symlink that leaves the image root"}
	}
	return fmt.Errorf("layer %d: %s: %w", a.layer, name, err)
}

func (a *applier) fail(name, op string, err error) error {
	return fmt.Errorf("layer %d: %s: %s: %w", a.layer, name, op, err)
}

func (a *applier) failIf(name, op string, err error) error {
	if err == nil {
		return nil
	}
	return a.fail(name, op, err)
}

// limitedWriter writes to f and counts against the import's limits.
type limitedWriter struct {
	f   *os.File
	lim *limits
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if lerr := w.lim.wrote(int64(n)); err == nil {
		err = lerr
	}
	return n, err
}
