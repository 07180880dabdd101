package bootstrap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// CopyTree copies the tree at src into the existing directory dst,
// keeping modes (with set-id bits), owners, mtimes, symlinks and hard
// links. It stays on src's device: a directory on another device (a mount
// point such as /proc) is created empty and not entered. dst itself is
// skipped when it lies inside src. Device nodes, FIFOs and sockets are not
// copied (devtmpfs provides /dev).
//
// With label set, every copy (dst itself included) gets the SELinux context
// label gives its path in the new root ("/" + its path below src): the
// tree is labelled as it is copied, with no second pass. Failures to set a
// label do not stop the copy; they are returned as a *LabelError at the end.
func CopyTree(src, dst string, label LabelFunc) error {
	c := &treeCopier{src: filepath.Clean(src), dst: filepath.Clean(dst), label: label, links: map[[2]uint64]string{}}
	if err := unix.Lstat(c.src, &c.rootSt); err != nil {
		return fmt.Errorf("stat %s: %w", c.src, err)
	}
	if err := unix.Stat(c.dst, &c.dstSt); err != nil {
		return fmt.Errorf("stat %s: %w", c.dst, err)
	}
	if err := filepath.WalkDir(c.src, c.visit); err != nil {
		return err
	}
	// directories last (deepest first) so their mtimes and read-only modes
	// are not disturbed by filling them
	for i := len(c.dirs) - 1; i >= 0; i-- {
		if err := setAttrs(c.dirs[i].path, &c.dirs[i].st, false); err != nil {
			return err
		}
	}
	if c.lerr.Failed > 0 {
		return &c.lerr
	}
	return nil
}

// treeCopier is one CopyTree run.
type treeCopier struct {
	src, dst      string
	rootSt, dstSt unix.Stat_t
	label         LabelFunc
	dirs          []dirAttr            // copied directories, attributes set at the end
	links         map[[2]uint64]string // (dev, ino) -> copied path, for nlink > 1
	lerr          LabelError
}

// dirAttr is a copied directory and the attributes it gets last.
type dirAttr struct {
	path string
	st   unix.Stat_t
}

// setLabel labels target (rel below src) when label gives it a context,
// counting failures instead of stopping the copy.
func (c *treeCopier) setLabel(target, rel string, mode uint32) {
	if c.label == nil {
		return
	}
	ctx, ok := c.label(filepath.Join("/", rel), mode&unix.S_IFMT)
	if !ok {
		return
	}
	c.lerr.Labelled++
	if err := unix.Lsetxattr(target, xattrSELinux, append([]byte(ctx), 0), 0); err != nil {
		c.lerr.Failed++
		if c.lerr.First == nil {
			c.lerr.First = fmt.Errorf("label %s %s: %w", target, ctx, err)
		}
	}
}

// visit copies one entry of src (a filepath.WalkDir callback).
func (c *treeCopier) visit(p string, _ fs.DirEntry, err error) error {
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(c.src, p)
	if err != nil {
		return err
	}
	target := filepath.Join(c.dst, rel)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	if st.Dev == c.dstSt.Dev && st.Ino == c.dstSt.Ino {
		return filepath.SkipDir // the destination itself
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if rel != "." {
			if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
		}
		c.dirs = append(c.dirs, dirAttr{target, st})
		c.setLabel(target, rel, st.Mode)
		if st.Dev != c.rootSt.Dev {
			return filepath.SkipDir // another file system: keep only the mount point
		}
		return nil
	case unix.S_IFLNK:
		l, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if err := os.Symlink(l, target); err != nil {
			return err
		}
		c.setLabel(target, rel, st.Mode)
		return setAttrs(target, &st, true)
	case unix.S_IFREG:
		return c.copyRegular(p, target, rel, &st)
	default:
		return nil // devices, FIFOs, sockets
	}
}

// copyRegular copies a regular file, or links it to the copy of a file
// already copied (a hard link in src).
func (c *treeCopier) copyRegular(p, target, rel string, st *unix.Stat_t) error {
	if st.Nlink > 1 {
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if first, ok := c.links[key]; ok {
			return os.Link(first, target)
		}
		c.links[key] = target
	}
	if err := copyFile(p, target); err != nil {
		return err
	}
	c.setLabel(target, rel, st.Mode)
	return setAttrs(target, st, false)
}

// LabelTree labels dir and everything below it on dir's device (an API
// file system moved into the new root, such as /dev) in place.
func LabelTree(dir string, label LabelFunc) error {
	var rootSt unix.Stat_t
	if err := unix.Lstat(dir, &rootSt); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	var lerr LabelError
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone meanwhile (a /dev node): nothing to label
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		if st.Dev != rootSt.Dev {
			return filepath.SkipDir
		}
		ctx, ok := label(p, st.Mode&unix.S_IFMT)
		if !ok {
			return nil
		}
		lerr.Labelled++
		if err := unix.Lsetxattr(p, xattrSELinux, append([]byte(ctx), 0), 0); err != nil {
			lerr.Failed++
			if lerr.First == nil {
				lerr.First = fmt.Errorf("label %s %s: %w", p, ctx, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if lerr.Failed > 0 {
		return &lerr
	}
	return nil
}

// LabelFunc gives the SELinux context of a path of the new root with the
// file type mode (S_IFMT bits); ok false: leave it unlabelled.
type LabelFunc func(path string, mode uint32) (ctx string, ok bool)

const xattrSELinux = "security.selinux"

// LabelError reports labels CopyTree could not set (the copy itself is
// complete).
type LabelError struct {
	Labelled, Failed int
	First            error
}

func (e *LabelError) Error() string {
	return fmt.Sprintf("%d of %d labels not set; first: %v", e.Failed, e.Labelled, e.First)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := copyData(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

func setAttrs(p string, st *unix.Stat_t, symlink bool) error {
	if err := unix.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", p, err)
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if !symlink {
		if err := unix.Chmod(p, st.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times %s: %w", p, err)
	}
	return nil
}

// RemoveTree deletes everything below dir that is on dir's device, like
// busybox switch_root's delete_contents: other file systems (mount points)
// are left alone, dir itself stays. It goes on after errors and returns
// the first one.
func RemoveTree(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	return removeContents(dir, uint64(st.Dev))
}

func removeContents(dir string, dev uint64) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			keep(err)
			continue
		}
		if uint64(st.Dev) != dev {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			keep(removeContents(p, dev))
			if err := unix.Rmdir(p); err != nil && !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.ENOTEMPTY) {
				keep(fmt.Errorf("rmdir %s: %w", p, err))
			}
			continue
		}
		if err := unix.Unlink(p); err != nil {
			keep(fmt.Errorf("unlink %s: %w", p, err))
		}
	}
	return first
}
