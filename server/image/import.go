// Package image imports node images from container images and archives into
// the served tree (images/NAME/rootfs), lists and deletes them, and runs
// commands inside them (chroot in a private mount namespace).
package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/wwcluster/ww/server/artifact"
	"github.com/wwcluster/ww/server/atomicfile"
)

// MetaFile is images/NAME/image.json, written after a successful import.
const MetaFile = "image.json"

// Options for Import.
type Options struct {
	Tree   string // the served tree
	Name   string // images/NAME
	Source string // OCI layout dir, OCI archive, docker/podman save tar, rootfs tar(.gz/.zst), docker://REF
	// Platform picks the image from a multi-platform index (default linux/GOARCH).
	Platform string
	// MaxSize refuses an image that writes more file data than this (0: no limit).
	MaxSize int64
	// Reserve is the free space to leave on the tree's file system: the
	// import is refused before it would drop below (0: DefaultReserve;
	// NoReserve: none).
	Reserve int64
	// Progress receives progress; Terminal rewrites one line, otherwise one line per layer.
	Progress io.Writer
	Terminal bool
}

// Meta is what image.json records.
type Meta struct {
	Source string `json:"source"`
	Kind   string `json:"kind"`
	// Digest is the image manifest's digest (a docker archive has none: its
	// image ID, the config's digest). Every layer was checked against it.
	Digest     string    `json:"digest,omitempty"`
	Layers     int       `json:"layers"`
	Files      int64     `json:"files"`
	Bytes      int64     `json:"bytes"`
	ImportedAt time.Time `json:"imported_at"`
	// Warnings about the imported tree (no kernel, no /sbin/init).
	Warnings []string `json:"warnings,omitempty"`
	// Architecture is the image config's (GOARCH names, e.g. arm64; ""
	// when the source has none): `image list` shows it when the kernel
	// does not say.
	Architecture string `json:"architecture,omitempty"`
}

// Import builds images/NAME/rootfs from opts.Source in a temporary
// directory next to it and swaps it in with one atomic rename; on any
// error (or ctx cancelled) the old rootfs is untouched and keeps serving.
// Every blob is read to its end and checked against its digest before
// the swap. Nothing is unpacked besides the new tree, which is bounded by
// opts.MaxSize and opts.Reserve.
func Import(ctx context.Context, opts Options) (*Meta, error) {
	if err := checkName(opts.Name); err != nil {
		return nil, err
	}
	if opts.Platform == "" {
		opts.Platform = "linux/" + runtime.GOARCH
	}
	platform, err := v1.ParsePlatform(opts.Platform)
	if err != nil {
		return nil, fmt.Errorf("--platform %q: %w", opts.Platform, err)
	}
	if old, changed, err := SecureImagesDir(opts.Tree); err != nil {
		return nil, err
	} else if changed && opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "images/: mode %04o made 0700 (image trees hold setuid-root files no local user may reach)\n", old)
	}
	// Temporary trees of killed imports of any image; this one's below.
	if _, err := CleanLeftovers(opts.Tree); err != nil && opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "leftovers of killed imports: %v\n", err)
	}
	dir := filepath.Join(opts.Tree, "images", opts.Name)
	lock, err := lockImage(dir, true)
	if err != nil {
		return nil, err
	}
	meta, err := importLocked(ctx, opts, dir, platform)
	if err != nil {
		// A failed import of a new image leaves no directory behind.
		removeIfEmptyImage(dir)
	}
	lock.Close()
	return meta, err
}

func importLocked(ctx context.Context, opts Options, dir string, platform *v1.Platform) (*Meta, error) {
	// Leftovers of imports of this image that were killed (the lock is ours).
	removeImportDirs(dir)
	work, err := os.MkdirTemp(dir, ".import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work) // the new tree on failure, the old one after a swap
	if err := writeOwner(work); err != nil {
		return nil, err
	}
	lim, err := newLimits(dir, opts.MaxSize, opts.Reserve)
	if err != nil {
		return nil, fmt.Errorf("import refused: %w", err)
	}
	src, err := openSource(ctx, opts.Source, platform)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	newRoot := filepath.Join(work, "rootfs")
	if err := os.Mkdir(newRoot, 0o755); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(newRoot)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	a := &applier{root: root, lim: lim}
	p := &progress{w: opts.Progress, terminal: opts.Terminal, layers: len(src.layers)}
	for i, l := range src.layers {
		a.layer = i + 1
		if err := applyOne(ctx, a, l, p); err != nil {
			return nil, err
		}
	}
	p.done(a)
	warnings := bootWarnings(newRoot, opts.Name)
	if err := swapInto(newRoot, filepath.Join(dir, "rootfs")); err != nil {
		return nil, err
	}
	meta := &Meta{Source: opts.Source, Kind: src.kind, Digest: src.digest, Layers: len(src.layers),
		Files: a.files, Bytes: a.bytes, ImportedAt: time.Now().UTC(), Warnings: warnings, Architecture: src.arch}
	data, _ := json.MarshalIndent(meta, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(dir, MetaFile), append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	return meta, nil
}

// bootWarnings says what a node needs that the new tree lacks: a kernel
// (boot/vmlinuz-*) and /sbin/init. A container base image has neither
// until they are installed with image exec; an archive imported as a
// root filesystem by mistake has neither either.
func bootWarnings(rootfs, name string) []string {
	var missing []string
	if k, err := artifact.NewestKernel(rootfs); err == nil && k == "" {
		missing = append(missing, "no kernel (boot/vmlinuz-*)")
	}
	if !existsIn(rootfs, "sbin/init") {
		missing = append(missing, "no /sbin/init")
	}
	if len(missing) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("image %s has %s: nodes cannot boot it until that is installed (wwserver image exec %s -- …)",
		name, strings.Join(missing, " and "), name)}
}

// existsIn reports whether p exists in the tree at rootfs as the image
// sees it: symlinks are followed, absolute ones from rootfs.
func existsIn(rootfs, p string) bool {
	parts := strings.Split(p, "/")
	cur := ""
	links := 0
	for len(parts) > 0 {
		c := parts[0]
		parts = parts[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if cur = path.Dir(cur); cur == "." {
				cur = ""
			}
			continue
		}
		next := path.Join(cur, c)
		fi, err := os.Lstat(filepath.Join(rootfs, next))
		if err != nil {
			return false
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if links++; links > 40 {
				return false
			}
			t, err := os.Readlink(filepath.Join(rootfs, next))
			if err != nil {
				return false
			}
			if strings.HasPrefix(t, "/") {
				cur = ""
			}
			parts = append(strings.Split(t, "/"), parts...)
			continue
		}
		cur = next
	}
	return true
}

// swapInto puts newRoot at target: one rename when target is new, else an
// atomic exchange (renameat2 RENAME_EXCHANGE), so a reader always sees a
// whole old or a whole new tree. The old tree ends up at newRoot.
func swapInto(newRoot, target string) error {
	err := unix.Renameat2(unix.AT_FDCWD, newRoot, unix.AT_FDCWD, target, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.ENOENT) {
		err = os.Rename(newRoot, target)
	}
	if err != nil {
		return fmt.Errorf("swap in %s: %w", target, err)
	}
	return nil
}

// lockFile is images/NAME/.lock.
const lockFile = ".lock"

// lockImage serialises imports, execs and deletes of one image: it
// returns the locked file, unlocked when every copy of its descriptor is
// closed (image exec hands one to the command, so the image stays locked
// while anything it started runs). create makes the image directory.
func lockImage(dir string, create bool) (*os.File, error) {
	p := filepath.Join(dir, lockFile)
	for range 5 {
		if create {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			return nil, fmt.Errorf("image %s is in use by another image import, exec or delete (or a command image exec started still runs)", filepath.Base(dir))
		}
		// A failed import of a new image removes the directory, lock file
		// and all, while holding the lock: a lock on a file no longer
		// there protects nothing.
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(p, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return f, nil
		}
		f.Close()
		if !create {
			return nil, fmt.Errorf("image %s: no such image", filepath.Base(dir))
		}
	}
	return nil, fmt.Errorf("image %s: its lock file keeps being removed", filepath.Base(dir))
}

// removeIfEmptyImage removes dir when it holds nothing but its lock file
// (a failed import of a new name); called with the lock held.
func removeIfEmptyImage(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.Name() != lockFile {
			return
		}
	}
	_ = os.Remove(filepath.Join(dir, lockFile))
	_ = os.Remove(dir)
}

// checkName accepts what nodes.toml accepts as an image name.
func checkName(s string) error {
	if s == "" || len(s) > 63 || s == "." || s == ".." || strings.HasPrefix(s, ".") {
		return fmt.Errorf("image name %q: want 1-63 letters, digits, '-', '_', '.' (not starting with '.')", s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("image name %q: want 1-63 letters, digits, '-', '_', '.'", s)
		}
	}
	return nil
}

// ctxReader stops a copy when ctx is done and reports bytes read.
type ctxReader struct {
	ctx    context.Context
	r      io.Reader
	onRead func(int)
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.onRead(n)
	return n, err
}

// progress prints layers and bytes: one rewritten line on a terminal (at
// most every 200 ms), one line per layer otherwise.
type progress struct {
	w        io.Writer
	terminal bool
	layers   int
	layer    int
	size     int64
	read     int64
	last     time.Time
}

func (p *progress) start(i int, l layerSource) {
	p.layer, p.size, p.read = i, l.size, 0
	p.print(true)
}

func (p *progress) add(n int) {
	p.read += int64(n)
	if p.terminal && time.Since(p.last) > 200*time.Millisecond {
		p.print(false)
	}
}

func (p *progress) print(newLayer bool) {
	if p.w == nil || (!p.terminal && !newLayer) {
		return
	}
	p.last = time.Now()
	line := fmt.Sprintf("layer %d/%d", p.layer, p.layers)
	if p.terminal {
		line += fmt.Sprintf(": %s read", mib(p.read))
	}
	if p.size > 0 {
		line += fmt.Sprintf(" (%s stored)", mib(p.size))
	}
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) done(a *applier) {
	if p.w == nil {
		return
	}
	if p.terminal {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "%d layer(s), %d files, %s written\n", p.layers, a.files, mib(a.bytes))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
