package bootstrap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// OverlayTree lays the tree at src over the existing tree at dst (the
// two-stage boot: the initramfs, i.e. the system and runtime overlays and
// the network drivers, over the image just unpacked), so that src wins: a
// file, symlink or FIFO of src replaces what dst has at that path (a
// directory there included), a directory of src is merged into dst's and
// gets src's mode, owner and mtime. As the kernel does when it unpacks
// initrds one after the other, a directory of src meets a symlink in dst
// that leads to a directory (merged /usr: lib -> usr/lib) by going through
// it, resolved inside dst as in a chroot (an absolute target is taken
// relative to dst, ".." stops at dst): nothing is written outside dst.
//
// Like CopyTree it stays on src's device (mount points are created empty),
// skips dst itself, and copies no device nodes or sockets.
func OverlayTree(src, dst string) error {
	src, dst = filepath.Clean(src), filepath.Clean(dst)
	o := &overlayWalk{src: src, realOf: map[string]string{".": "."}}
	if err := unix.Lstat(src, &o.srcSt); err != nil {
		return fmt.Errorf("stat %s: %w", src, err)
	}
	if err := unix.Stat(dst, &o.dstSt); err != nil {
		return fmt.Errorf("stat %s: %w", dst, err)
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	o.root = root
	if err := filepath.WalkDir(src, o.visit); err != nil {
		return err
	}
	return o.setDirAttrs()
}

// overlayWalk is OverlayTree's state while it walks src.
type overlayWalk struct {
	src          string
	root         *os.Root // dst
	srcSt, dstSt unix.Stat_t
	dirs         []overlayDirAttr
	realOf       map[string]string // src dir (relative) → its real path in dst
}

type overlayDirAttr struct {
	real string // in dst, symlinks resolved
	st   unix.Stat_t
}

// visit lays one entry of src over dst.
func (o *overlayWalk) visit(p string, d fs.DirEntry, err error) error {
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(o.src, p)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	if st.Dev == o.dstSt.Dev && st.Ino == o.dstSt.Ino {
		return filepath.SkipDir // the destination itself
	}
	if rel == "." {
		o.dirs = append(o.dirs, overlayDirAttr{".", st})
		return nil
	}
	parent, ok := o.realOf[filepath.Dir(rel)]
	if !ok {
		return fmt.Errorf("%s: parent not laid over", rel)
	}
	target := path.Join(parent, filepath.Base(rel))
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return o.dir(rel, target, &st)
	case unix.S_IFLNK:
		l, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if err := makeRoom(o.root, target); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if err := o.root.Symlink(l, target); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return o.root.Lchown(target, int(st.Uid), int(st.Gid))
	case unix.S_IFREG:
		if err := makeRoom(o.root, target); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return overlayFile(o.root, p, target, &st)
	default:
		return nil // devices, FIFOs, sockets (as CopyTree)
	}
}

// dir lays a directory over dst (through a symlink to a directory there);
// its mode and times are set at the end, by setDirAttrs.
func (o *overlayWalk) dir(rel, target string, st *unix.Stat_t) error {
	real, err := overlayDir(o.root, target)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	o.realOf[rel] = real
	if err := o.root.Lchown(real, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", rel, err)
	}
	o.dirs = append(o.dirs, overlayDirAttr{real, *st})
	if st.Dev != o.srcSt.Dev {
		return filepath.SkipDir // a mount point: keep it empty
	}
	return nil
}

// setDirAttrs sets modes and mtimes of directories last, deepest first
// (writing into a directory changes its mtime).
func (o *overlayWalk) setDirAttrs() error {
	for i := len(o.dirs) - 1; i >= 0; i-- {
		a := o.dirs[i]
		if err := o.root.Chmod(a.real, fs.FileMode(a.st.Mode&0o777)|modeBits(a.st.Mode)); err != nil {
			return fmt.Errorf("chmod %s: %w", a.real, err)
		}
		mt := unixTime(a.st.Mtim)
		if err := o.root.Chtimes(a.real, mt, mt); err != nil {
			return fmt.Errorf("set times %s: %w", a.real, err)
		}
	}
	return nil
}

// overlayDir makes target a directory in root, through a symlink to a
// directory (resolved chroot-style), and returns its real path.
func overlayDir(root *os.Root, target string) (string, error) {
	real, err := resolveDir(root, target)
	if err == nil {
		return real, nil
	}
	// Nothing there, a file, a dangling symlink or a loop: the overlay's
	// directory replaces it.
	if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errNotDir) && !errors.Is(err, errLoop) {
		return "", err
	}
	if err := makeRoom(root, target); err != nil {
		return "", err
	}
	if err := root.Mkdir(target, 0o700); err != nil {
		return "", err
	}
	return target, nil
}

var (
	errNotDir = errors.New("not a directory")
	errLoop   = errors.New("too many levels of symlinks")
)

// resolveDir resolves target inside root with chroot semantics (symlinks
// followed, an absolute target taken relative to root, ".." stopping at
// root) and returns the real path of the directory it names.
func resolveDir(root *os.Root, target string) (string, error) {
	parts := strings.Split(target, "/")
	cur := "."
	for hops := 0; len(parts) > 0; {
		c := parts[0]
		parts = parts[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur) // "." stays "."
			continue
		}
		next := path.Join(cur, c)
		fi, err := root.Lstat(next) // cur is real: only next itself may be a link
		if err != nil {
			return "", err
		}
		switch {
		case fi.IsDir():
			cur = next
		case fi.Mode()&fs.ModeSymlink != 0:
			if hops++; hops > 40 {
				return "", errLoop
			}
			l, err := root.Readlink(next)
			if err != nil {
				return "", err
			}
			if path.IsAbs(l) {
				cur = "."
			}
			parts = append(strings.Split(l, "/"), parts...)
		default:
			return "", fmt.Errorf("%s: %w", next, errNotDir)
		}
	}
	return cur, nil
}

// makeRoom removes what is at target (a directory with its contents).
func makeRoom(root *os.Root, target string) error {
	fi, err := root.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return root.RemoveAll(target)
	}
	return root.Remove(target)
}

func overlayFile(root *os.Root, src, target string, st *unix.Stat_t) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := root.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := copyData(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Chown(int(st.Uid), int(st.Gid)); err != nil {
		out.Close()
		return fmt.Errorf("chown %s: %w", target, err)
	}
	if err := out.Chmod(fs.FileMode(st.Mode&0o777) | modeBits(st.Mode)); err != nil {
		out.Close()
		return fmt.Errorf("chmod %s: %w", target, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	mt := unixTime(st.Mtim)
	return root.Chtimes(target, mt, mt)
}

// modeBits converts the set-id and sticky bits of a stat mode.
func modeBits(m uint32) fs.FileMode {
	var fm fs.FileMode
	if m&unix.S_ISUID != 0 {
		fm |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

func unixTime(ts unix.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec) }
