package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wwcluster/ww/server/config"
)

// Image returns the node's image: images/NAME/rootfs as one gzip member
// holding one newc cpio archive, built once per image content and shared by
// every node using it. See the package doc for what goes in.
func (b *Builder) Image(ctx context.Context, snap *config.Snapshot, n *config.Node) (*Artifact, error) {
	a, err := b.image(ctx, b.newFingerprints(), n)
	if err != nil {
		b.m.errors.WithLabelValues("image").Inc()
	}
	return a, err
}

func (b *Builder) image(ctx context.Context, fps *fingerprints, n *config.Node) (*Artifact, error) {
	if n == nil {
		return nil, errors.New("build image: no node")
	}
	dir, err := b.rootfs(n)
	if err != nil {
		return nil, err
	}
	fp, err := fps.get(ctx, dir, treeImage)
	if err != nil {
		return nil, b.treeError("image", n.Image, "images/"+n.Image+"/rootfs", err)
	}
	key := hashKey("ww-image/1", strconv.Itoa(gzipLevel), fp.hash)
	p, err := b.get(ctx, kindImage, key, func(w io.Writer) error {
		return writeImage(w, dir)
	})
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", n.Image, err)
	}
	return b.artifact(ImageName, p), nil
}

// rootfs checks the node's image name and returns its rootfs directory.
func (b *Builder) rootfs(n *config.Node) (string, error) {
	if err := checkName("image", n.Image); err != nil {
		return "", err
	}
	dir := b.imageDir(n.Image)
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", notFound("image %q does not exist (no images/%s/rootfs)", n.Image, n.Image)
		}
		return "", fmt.Errorf("image %q: %w", n.Image, err)
	}
	if !fi.IsDir() {
		return "", notFound("image %q: images/%s/rootfs is not a directory", n.Image, n.Image)
	}
	return dir, nil
}

// treeError turns a walk error into a readable one; a tree that vanished is
// ErrNotFound.
func (b *Builder) treeError(what, name, rel string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return &kindError{kind: ErrNotFound, msg: fmt.Sprintf("%s %q: %s", what, name, rel), err: err}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%s %q: walk %s: %w", what, name, rel, err)
}

// writeImage writes the cpio archive of the image tree at dir: everything
// but the contents of boot/.
func writeImage(w io.Writer, dir string) error {
	cw := newArchive(w)
	err := walkTree(dir, func(e *entry, d *os.Root, name string) error {
		boot := e.rel == imageBootDir && e.mode.IsDir()
		if boot {
			e.mtime = time.Unix(0, 0) // as in the fingerprint
		}
		if err := writeEntry(cw, e, e.rel, func() (*os.File, error) { return openRead(d, name) }); err != nil {
			return err
		}
		if boot {
			return errSkipDir
		}
		return nil
	})
	if err != nil {
		return err
	}
	return cw.Close()
}

// Kernel returns the node's kernel: the file in the image tree itself, no
// copy. It is the node's kernel setting (a path inside the rootfs) or else
// the newest rootfs/boot/vmlinuz-* by version (6.1.0-28 > 6.1.0-9). Symlinks
// are resolved inside the rootfs (an absolute target is taken relative to
// the rootfs, as in a chroot); nothing outside it can be served.
func (b *Builder) Kernel(ctx context.Context, snap *config.Snapshot, n *config.Node) (*Artifact, error) {
	a, err := b.findKernel(n, true)
	if err != nil {
		b.m.errors.WithLabelValues("kernel").Inc()
	}
	return a, err
}

// kernel is the node's kernel for what is known about it (name, size,
// path): nothing is left open.
func (b *Builder) kernel(n *config.Node) (*Artifact, error) { return b.findKernel(n, false) }

// findKernel finds the node's kernel; with handOver, the kernel file is
// opened here and handed to the first Open (Kernel: served right after).
func (b *Builder) findKernel(n *config.Node, handOver bool) (*Artifact, error) {
	if n == nil {
		return nil, errors.New("build kernel: no node")
	}
	dir, err := b.rootfs(n)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", n.Image, err)
	}
	defer root.Close()

	var rel string
	if n.Kernel != "" {
		rel = path.Clean("/" + n.Kernel)[1:]
		if rel == "" {
			return nil, notFound("image %q: kernel %q is not a file", n.Image, n.Kernel)
		}
	} else {
		rel, err = newestKernel(root)
		if escapesRoot(err) {
			return nil, &kindError{kind: ErrNotFound, msg: fmt.Sprintf("image %q: %s: a symlink leads out of the image rootfs", n.Image, imageBootDir), err: err}
		}
		if err != nil {
			return nil, fmt.Errorf("image %q: %w", n.Image, err)
		}
		if rel == "" {
			return nil, notFound("image %q: no rootfs/boot/vmlinuz-*", n.Image)
		}
	}
	real, fi, err := resolveInRoot(root, rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &kindError{kind: ErrNotFound, msg: fmt.Sprintf("image %q: kernel %s", n.Image, rel), err: err}
		}
		if escapesRoot(err) {
			return nil, &kindError{kind: ErrNotFound, msg: fmt.Sprintf("image %q: kernel %s: a symlink on its path leads out of the image rootfs", n.Image, rel), err: err}
		}
		return nil, fmt.Errorf("image %q: kernel %s: %w", n.Image, rel, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, notFound("image %q: kernel %s is not a regular file", n.Image, rel)
	}
	e := newEntry(real, fi)
	name := path.Base(rel)
	if !strings.HasPrefix(name, "vmlinuz") {
		name = "vmlinuz-" + name
	}
	imageName := n.Image
	a := &Artifact{
		Name:    name,
		ETag:    etag("ww-kernel/1", imageName, real, strconv.FormatInt(e.size, 10), strconv.FormatInt(e.mtime.UnixNano(), 10), strconv.FormatInt(e.ctime, 10), strconv.FormatUint(e.ino, 10)),
		Size:    e.size,
		ModTime: e.mtime,
		Parts:   []string{filepath.Join(dir, filepath.FromSlash(real))},
		sizes:   []int64{e.size},

		kernelPath: rel,
	}
	a.open = func(int) (*os.File, error) {
		// Re-open through os.Root: the rootfs may have changed since.
		r, err := os.OpenRoot(dir)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return openRead(r, real)
	}
	if handOver {
		handOverOpen(a, root, real)
	}
	return a, nil
}

// handOverOpen opens a's file through root for a's first Open (the
// request's, right after), instead of opening root and file again there.
func handOverOpen(a *Artifact, root *os.Root, real string) {
	if f, err := openRead(root, real); err == nil {
		if ofi, err := f.Stat(); err == nil && ofi.Mode().IsRegular() && ofi.Size() == a.Size {
			a.opened.Store(f)
		} else {
			f.Close()
		}
	}
}

// newestKernel returns "boot/vmlinuz-V" with the highest version V, or "".
func newestKernel(root *os.Root) (string, error) {
	// O_DIRECTORY: a FIFO at boot/ would block the open forever.
	f, err := root.OpenFile(imageBootDir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if errors.Is(err, syscall.ENOTDIR) {
		return "", nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return "", err
	}
	var cands []string
	for _, name := range names {
		if strings.HasPrefix(name, "vmlinuz-") && len(name) > len("vmlinuz-") {
			cands = append(cands, name)
		}
	}
	if len(cands) == 0 {
		return "", nil
	}
	sort.Slice(cands, func(i, j int) bool { return versionLess(cands[i], cands[j]) })
	return imageBootDir + "/" + cands[len(cands)-1], nil
}

// versionLess compares strings by runs: digit runs numerically, other runs
// bytewise; so 6.1.0-9 < 6.1.0-28 and 5.14.0-362.el9 < 5.14.0-427.el9. Ties
// (e.g. 007 vs 7) fall back to plain comparison.
func versionLess(a, b string) bool {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		da, db := isDigit(a[i]), isDigit(b[j])
		if da && db {
			si, sj := i, j
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			x := strings.TrimLeft(a[si:i], "0")
			y := strings.TrimLeft(b[sj:j], "0")
			if len(x) != len(y) {
				return len(x) < len(y)
			}
			if x != y {
				return x < y
			}
			continue
		}
		if da != db {
			// A number is newer than text at the same place: 6.1.0-28 > 6.1.0-rc1.
			return db
		}
		if a[i] != b[j] {
			return a[i] < b[j]
		}
		i++
		j++
	}
	if len(a)-i != len(b)-j {
		return len(a)-i < len(b)-j
	}
	return a < b
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// resolveInRoot follows symlinks at the end of rel inside root, with chroot
// semantics: an absolute target is relative to root, ".." stops at root.
// Symlinked directories on the way are followed by os.Root only while they
// stay inside root (an absolute or escaping one fails). It returns the
// resolved path and its lstat.
// escapesRoot reports whether err is os.Root refusing a path that leads out
// of the root (a directory symlink to an absolute path or up through ..).
// os keeps that error unexported; its text is the only handle.
func escapesRoot(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && pe.Err != nil && pe.Err.Error() == "path escapes from parent"
}

func resolveInRoot(root *os.Root, rel string) (string, fs.FileInfo, error) {
	for hops := 0; hops < 16; hops++ {
		fi, err := root.Lstat(rel)
		if err != nil {
			return "", nil, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return rel, fi, nil
		}
		target, err := root.Readlink(rel)
		if err != nil {
			return "", nil, err
		}
		if !path.IsAbs(target) {
			target = path.Join("/", path.Dir(rel), target)
		}
		rel = path.Clean(target)[1:]
		if rel == "" {
			return "", nil, fmt.Errorf("symlink resolves to the rootfs itself")
		}
	}
	return "", nil, fmt.Errorf("too many levels of symlinks")
}
