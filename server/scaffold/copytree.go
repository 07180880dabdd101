package scaffold

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// copyRegular copies one file's content to dst with mode.
func copyRegular(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	_ = os.Remove(dst)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// CopyTree copies the tree at src to dst like cp -a: file types (regular,
// directory, symlink, device, FIFO), permission bits including setuid,
// setgid and sticky, owners (when running as root), hard links, extended
// attributes (best effort: file capabilities, SELinux labels) and
// modification times. Sockets are skipped. Symlinks are never followed.
func CopyTree(src, dst string) error {
	src = filepath.Clean(src)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	c := treeCopy{asRoot: os.Geteuid() == 0, links: map[[2]uint64]string{}}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		return c.entry(p, filepath.Join(dst, rel))
	})
	if err != nil {
		return err
	}
	// Directories last and deepest first, so adding entries does not touch
	// their times after they were set.
	for i := len(c.dirs) - 1; i >= 0; i-- {
		d := c.dirs[i]
		if err := applyMeta(d.src, d.path, d.st, uint32(d.st.Mode)&0o7777, c.asRoot, false); err != nil {
			return err
		}
	}
	return nil
}

// treeCopy is one CopyTree.
type treeCopy struct {
	asRoot bool
	links  map[[2]uint64]string // (dev, inode) → first copy, for hard links
	dirs   []dirMeta            // directories, their metadata set last
}

type dirMeta struct {
	path string
	st   *syscall.Stat_t
	src  string
}

// entry copies the entry p to target.
func (c *treeCopy) entry(p, target string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no stat information", p)
	}
	perm := uint32(st.Mode) & 0o7777
	switch fi.Mode().Type() {
	case fs.ModeDir:
		if err := os.MkdirAll(target, 0o700); err != nil {
			return err
		}
		c.dirs = append(c.dirs, dirMeta{target, st, p})
		return nil
	case fs.ModeSymlink:
		link, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if err := removeExisting(target); err != nil {
			return err
		}
		if err := os.Symlink(link, target); err != nil {
			return err
		}
	case 0: // regular
		linked, err := c.regular(p, target, st)
		if err != nil || linked {
			return err
		}
	case fs.ModeSocket:
		return nil
	default: // device or FIFO
		if err := removeExisting(target); err != nil {
			return err
		}
		if err := unix.Mknod(target, st.Mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("mknod %s: %w", target, err)
		}
	}
	return applyMeta(p, target, st, perm, c.asRoot, fi.Mode().Type() == fs.ModeSymlink)
}

// regular copies a regular file, or hard-links it to its first copy
// (linked: nothing more to do).
func (c *treeCopy) regular(p, target string, st *syscall.Stat_t) (linked bool, err error) {
	key := [2]uint64{uint64(st.Dev), st.Ino}
	if first, ok := c.links[key]; ok && st.Nlink > 1 {
		if err := removeExisting(target); err != nil {
			return false, err
		}
		return true, os.Link(first, target)
	}
	if err := copyRegular(p, target, 0o600); err != nil {
		return false, err
	}
	if st.Nlink > 1 {
		c.links[key] = target
	}
	return false, nil
}

func removeExisting(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// applyMeta sets owner, mode, extended attributes and times of target from
// src, in that order (chown clears setuid bits and file capabilities).
func applyMeta(src, target string, st *syscall.Stat_t, perm uint32, asRoot, symlink bool) error {
	if asRoot {
		if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if !symlink {
		if err := unix.Chmod(target, perm); err != nil {
			return fmt.Errorf("chmod %s: %w", target, err)
		}
	}
	copyXattrs(src, target)
	ts := []unix.Timespec{
		unix.NsecToTimespec(st.Atim.Nano()),
		unix.NsecToTimespec(st.Mtim.Nano()),
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", target, err)
	}
	return nil
}

// copyXattrs copies extended attributes, best effort like cp -a: a
// filesystem without them, or a namespace we may not write, is not an error.
func copyXattrs(src, dst string) {
	size, err := unix.Llistxattr(src, nil)
	if err != nil || size <= 0 {
		return
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(src, buf)
	if err != nil {
		return
	}
	for _, name := range strings.Split(string(buf[:size]), "\x00") {
		if name == "" {
			continue
		}
		n, err := unix.Lgetxattr(src, name, nil)
		if err != nil || n < 0 {
			continue
		}
		val := make([]byte, n)
		if n, err = unix.Lgetxattr(src, name, val); err != nil {
			continue
		}
		_ = unix.Lsetxattr(dst, name, val[:n], 0)
	}
}
