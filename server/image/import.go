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
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

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
	// Progress receives progress; Terminal rewrites one line, otherwise one line per layer.
	Progress io.Writer
	Terminal bool
}

// Meta is what image.json records.
type Meta struct {
	Source     string    `json:"source"`
	Kind       string    `json:"kind"`
	Digest     string    `json:"digest,omitempty"`
	Layers     int       `json:"layers"`
	Files      int64     `json:"files"`
	Bytes      int64     `json:"bytes"`
	ImportedAt time.Time `json:"imported_at"`
}

// Import builds images/NAME/rootfs from opts.Source in a temporary
// directory next to it and swaps it in with one atomic rename; on any
// error (or ctx cancelled) the old rootfs is untouched and keeps serving.
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
	dir := filepath.Join(opts.Tree, "images", opts.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockImage(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Leftovers of an import that was killed.
	stale, _ := filepath.Glob(filepath.Join(dir, ".import-*"))
	for _, s := range stale {
		_ = os.RemoveAll(s)
	}
	work, err := os.MkdirTemp(dir, ".import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work) // the new tree on failure, the old one after a swap

	src, err := openSource(ctx, opts.Source, work, platform)
	if err != nil {
		return nil, err
	}
	newRoot := filepath.Join(work, "rootfs")
	if err := os.Mkdir(newRoot, 0o755); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(newRoot)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	a := &applier{root: root}
	p := &progress{w: opts.Progress, terminal: opts.Terminal, layers: len(src.layers)}
	for i, l := range src.layers {
		a.layer = i + 1
		if err := applyOne(ctx, a, l, p); err != nil {
			return nil, err
		}
	}
	p.done(a)
	if err := swapInto(newRoot, filepath.Join(dir, "rootfs")); err != nil {
		return nil, err
	}
	meta := &Meta{Source: opts.Source, Kind: src.kind, Digest: src.digest, Layers: len(src.layers),
		Files: a.files, Bytes: a.bytes, ImportedAt: time.Now().UTC()}
	data, _ := json.MarshalIndent(meta, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(dir, MetaFile), append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	return meta, nil
}

func applyOne(ctx context.Context, a *applier, l layerSource, p *progress) error {
	rc, err := l.open()
	if err != nil {
		return fmt.Errorf("layer %d (%s): %w", a.layer, l.digest, err)
	}
	defer rc.Close()
	p.start(a.layer, l)
	r, err := decompress(&ctxReader{ctx: ctx, r: rc, onRead: p.add})
	if err != nil {
		return fmt.Errorf("layer %d (%s): %w", a.layer, l.digest, err)
	}
	if err := a.applyLayer(r); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("import interrupted: %w", ctx.Err())
		}
		return err
	}
	return nil
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

// lockImage serialises imports and deletes of one image.
func lockImage(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("image %s is in use by another image import, exec or delete", filepath.Base(dir))
	}
	return func() { f.Close() }, nil
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
