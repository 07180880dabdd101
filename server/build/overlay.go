package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"

	"github.com/wwcluster/ww/server/config"
)

// overlaySet is a node's list of overlays with their current fingerprints.
type overlaySet struct {
	names     []string
	dirs      []string
	templates bool   // some overlay holds a template
	perNode   bool   // some template may use .Node
	ident     string // names and fingerprints, for cache keys
	// imageFiles are the files of the node's image that templates read
	// (ImageFile): their content is part of the render key.
	imageFiles []string
}

func (b *Builder) overlaySet(ctx context.Context, fps *fingerprints, names []string) (*overlaySet, error) {
	s := &overlaySet{names: names}
	ident := []string{}
	for _, name := range names {
		if err := checkName("overlay", name); err != nil {
			return nil, err
		}
		dir := b.overlayDir(name)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				return nil, notFound("overlay %q does not exist (no directory overlays/%s)", name, name)
			}
			return nil, fmt.Errorf("overlay %q: %w", name, err)
		}
		fp, err := fps.get(ctx, dir, treeOverlay)
		if err != nil {
			return nil, b.treeError("overlay", name, "overlays/"+name, err)
		}
		s.dirs = append(s.dirs, dir)
		s.templates = s.templates || len(fp.templates) > 0
		perNode, files := b.overlayPerNode(name, dir, fp)
		s.perNode = s.perNode || perNode
		s.imageFiles = append(s.imageFiles, files...)
		ident = append(ident, name, fp.hash)
	}
	s.ident = hashKey(ident...)
	return s, nil
}

// renderKey is what the rendered templates of the set depend on besides the
// set itself: nothing without templates, the shared inputs (server, nodes'
// hash) when no template uses .Node, else the node's inputs too.
func (s *overlaySet) renderKey(rc *renderCtx) (string, error) {
	switch {
	case !s.templates:
		return "", nil
	case !s.perNode:
		return "shared:" + rc.shared, nil
	case len(s.imageFiles) > 0:
		stamp, err := imageStamp(rc.data.imageDir, s.imageFiles)
		if err != nil {
			return "", templateError(err, "node %q: image %q", rc.data.Node.Name, rc.data.Node.Image)
		}
		return "node:" + rc.nodeInputs() + "\x00image:" + stamp, nil
	default:
		return "node:" + rc.nodeInputs(), nil
	}
}

// mergedEntry is one output path of a merged overlay set.
type mergedEntry struct {
	entry           // as found in the overlay (rel is the source path)
	overlay  int    // index of the overlay it comes from
	out      string // output path (rel without .ww for templates)
	template bool
}

// merged is the view of an overlay set: for each output path the entry of
// the last overlay that has it, parents before children. It keeps the
// overlays open (os.Root) for reading file contents.
type merged struct {
	names   []string
	roots   []*os.Root
	entries []*mergedEntry
}

func openMerged(names, dirs []string) (*merged, error) {
	m := &merged{names: names}
	byOut := map[string]*mergedEntry{}
	for i, dir := range dirs {
		r, err := os.OpenRoot(dir)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("overlay %q: %w", names[i], err)
		}
		m.roots = append(m.roots, r)
		err = walkTree(dir, func(e *entry, _ *os.Root, _ string) error {
			me := &mergedEntry{entry: *e, overlay: i, out: e.rel}
			if out, ok := templateOut(e); ok {
				me.out, me.template = out, true
			}
			// Later wins; in one overlay "x.ww" is walked after "x" and wins.
			byOut[me.out] = me
			return nil
		})
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("overlay %q: %w", names[i], err)
		}
	}
	outs := make([]string, 0, len(byOut))
	for out := range byOut {
		outs = append(outs, out)
	}
	sort.Strings(outs) // parents sort before their children
	kept := map[string]bool{}
	for _, out := range outs {
		me := byOut[out]
		// Leave out what a later overlay cut off by replacing a parent
		// directory with a file or symlink.
		if parent := path.Dir(out); parent != "." && !kept[parent] {
			continue
		}
		if me.mode.IsDir() {
			kept[out] = true
		}
		m.entries = append(m.entries, me)
	}
	return m, nil
}

func (m *merged) Close() {
	for _, r := range m.roots {
		r.Close()
	}
}

func (m *merged) opener(e *mergedEntry) func() (*os.File, error) {
	return func() (*os.File, error) { return openRead(m.roots[e.overlay], e.rel) }
}

// writeArchive writes one cpio archive of the merged entries: the plain ones
// (withFiles), the rendered templates (with rc != nil), or both.
func (m *merged) writeArchive(w io.Writer, b *Builder, withFiles bool, rc *renderCtx) error {
	cw := newArchive(w)
	for _, e := range m.entries {
		var err error
		switch {
		case e.template && rc != nil:
			var out []byte
			if out, err = m.render(b, e, rc); err == nil {
				err = writeData(cw, &e.entry, e.out, out)
			}
		case !e.template && withFiles:
			err = writeEntry(cw, &e.entry, e.out, m.opener(e))
		}
		if err != nil {
			if errors.Is(err, ErrTemplate) {
				return err
			}
			return fmt.Errorf("overlay %q: %w", m.names[e.overlay], err)
		}
	}
	return cw.Close()
}

// render reads and renders the template e.
func (m *merged) render(b *Builder, e *mergedEntry, rc *renderCtx) ([]byte, error) {
	name := m.names[e.overlay]
	src, err := readSmall(m.opener(e), e.rel)
	if err != nil {
		return nil, fmt.Errorf("overlay %q: %w", name, err)
	}
	pt, err := b.parse("overlays/"+name+"/"+e.rel, src)
	var out []byte
	if err == nil {
		out, err = b.execute(pt, rc)
	}
	if err != nil {
		return nil, templateError(err, "overlay %q: node %q", name, rc.data.Node.Name)
	}
	return out, nil
}

// readSmall reads a template source.
func readSmall(open func() (*os.File, error), rel string) ([]byte, error) {
	f, err := open()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", rel, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file any more: %w", rel, errChanged)
	}
	src, err := io.ReadAll(io.LimitReader(f, maxTemplateSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", rel, err)
	}
	if len(src) > maxTemplateSize {
		return nil, fmt.Errorf("%s: template larger than %d bytes", rel, maxTemplateSize)
	}
	return src, nil
}

// SystemOverlay returns the node's system overlay: the shared member (all
// plain files of its system overlays, built once per overlay content and
// shared by every node with the same list) followed by the node's member
// (its rendered templates), as two concatenated gzip members each holding a
// cpio archive. With no templates it is the shared member alone.
func (b *Builder) SystemOverlay(ctx context.Context, snap *config.Snapshot, n *config.Node) (*Artifact, error) {
	a, err := b.systemOverlay(ctx, b.newFingerprints(), snap, n)
	if err != nil {
		b.m.errors.WithLabelValues("system").Inc()
	}
	return a, err
}

func (b *Builder) systemOverlay(ctx context.Context, fps *fingerprints, snap *config.Snapshot, n *config.Node) (*Artifact, error) {
	rc, err := b.renderCtx(snap, n)
	if err != nil {
		return nil, err
	}
	set, err := b.overlaySet(ctx, fps, n.SystemOverlays)
	if err != nil {
		return nil, fmt.Errorf("system overlay: %w", err)
	}
	level := strconv.Itoa(gzipLevel)
	sharedKey := hashKey("ww-system-shared/1", level, set.ident)
	shared, err := b.get(ctx, kindShared, sharedKey, func(w io.Writer) error {
		m, err := openMerged(set.names, set.dirs)
		if err != nil {
			return err
		}
		defer m.Close()
		return m.writeArchive(w, b, true, nil)
	})
	if err != nil {
		return nil, fmt.Errorf("system overlay %v: %w", set.names, err)
	}
	if !set.templates {
		return b.artifact(SystemName, shared), nil
	}
	rk, err := set.renderKey(rc)
	if err != nil {
		return nil, fmt.Errorf("system overlay %v: %w", set.names, err)
	}
	nodeKey := hashKey("ww-system-node/1", level, set.ident, rk)
	node, err := b.get(ctx, kindNode, nodeKey, func(w io.Writer) error {
		m, err := openMerged(set.names, set.dirs)
		if err != nil {
			return err
		}
		defer m.Close()
		return m.writeArchive(w, b, false, rc)
	})
	if err != nil {
		return nil, fmt.Errorf("system overlay %v: %w", set.names, err)
	}
	return b.artifact(SystemName, shared, node), nil
}

// RuntimeOverlay returns the node's runtime overlay: one gzip member holding
// one cpio archive of its merged runtime overlays, templates rendered. It is
// per node when the overlays hold templates and shared otherwise.
func (b *Builder) RuntimeOverlay(ctx context.Context, snap *config.Snapshot, n *config.Node) (*Artifact, error) {
	a, err := b.runtimeOverlay(ctx, b.newFingerprints(), snap, n)
	if err != nil {
		b.m.errors.WithLabelValues("runtime").Inc()
	}
	return a, err
}

func (b *Builder) runtimeOverlay(ctx context.Context, fps *fingerprints, snap *config.Snapshot, n *config.Node) (*Artifact, error) {
	rc, err := b.renderCtx(snap, n)
	if err != nil {
		return nil, err
	}
	set, err := b.overlaySet(ctx, fps, n.RuntimeOverlays)
	if err != nil {
		return nil, fmt.Errorf("runtime overlay: %w", err)
	}
	rk, err := set.renderKey(rc)
	if err != nil {
		return nil, fmt.Errorf("runtime overlay %v: %w", set.names, err)
	}
	key := hashKey("ww-runtime/1", strconv.Itoa(gzipLevel), set.ident, rk)
	p, err := b.get(ctx, kindRuntime, key, func(w io.Writer) error {
		m, err := openMerged(set.names, set.dirs)
		if err != nil {
			return err
		}
		defer m.Close()
		return m.writeArchive(w, b, true, rc)
	})
	if err != nil {
		return nil, fmt.Errorf("runtime overlay %v: %w", set.names, err)
	}
	return b.artifact(RuntimeName, p), nil
}

// RenderOverlay writes a listing of one overlay as node n gets it, for the
// CLI: every entry with mode, owner, size and path (symlinks with their
// target), and the rendered content of each template between "--- path" and
// "--- end path" lines. It goes on past a failing template and returns all
// template errors at the end.
func (b *Builder) RenderOverlay(snap *config.Snapshot, n *config.Node, overlay string, w io.Writer) (err error) {
	rc, err := b.renderCtx(snap, n)
	if err != nil {
		return err
	}
	if err := checkName("overlay", overlay); err != nil {
		return err
	}
	dir := b.overlayDir(overlay)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return notFound("overlay %q does not exist (no directory overlays/%s)", overlay, overlay)
		}
		return fmt.Errorf("overlay %q: %w", overlay, err)
	}
	m, err := openMerged([]string{overlay}, []string{dir})
	if err != nil {
		return err
	}
	defer m.Close()
	var errs []error
	fmt.Fprintf(w, "# overlay %q for node %q\n", overlay, n.Name)
	for _, e := range m.entries {
		owner := strconv.FormatUint(uint64(e.uid), 10) + ":" + strconv.FormatUint(uint64(e.gid), 10)
		switch {
		case e.template:
			out, err := m.render(b, e, rc)
			if err != nil {
				errs = append(errs, err)
				fmt.Fprintf(w, "%s %-9s %10s %s (template %s: ERROR)\n", e.mode, owner, "-", e.out, e.rel)
				continue
			}
			fmt.Fprintf(w, "%s %-9s %10d %s (template %s)\n", e.mode, owner, len(out), e.out, e.rel)
			fmt.Fprintf(w, "--- %s\n", e.out)
			w.Write(out)
			if len(out) > 0 && out[len(out)-1] != '\n' {
				io.WriteString(w, "\n")
			}
			fmt.Fprintf(w, "--- end %s\n", e.out)
		case e.mode&fs.ModeSymlink != 0:
			fmt.Fprintf(w, "%s %-9s %10s %s -> %s\n", e.mode, owner, "-", e.out, e.link)
		case e.mode.IsDir():
			fmt.Fprintf(w, "%s %-9s %10s %s/\n", e.mode, owner, "-", e.out)
		default:
			fmt.Fprintf(w, "%s %-9s %10d %s\n", e.mode, owner, e.size, e.out)
		}
	}
	return errors.Join(errs...)
}
