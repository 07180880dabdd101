package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/wwcluster/ww/server/config"
)

// overlaySet is a node's list of overlays with their current fingerprints.
type overlaySet struct {
	names     []string
	dirs      []string
	files     bool    // some overlay holds a plain entry (not a template)
	templates bool    // some overlay holds a template
	tmpl      tmplUse // what its templates use
	ident     string  // names and fingerprints, for cache keys
	// imageFiles are the files of the node's image that templates read
	// (ImageFile): their content is part of the node member's key.
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
		s.files = s.files || fp.entries > len(fp.templates)
		s.templates = s.templates || len(fp.templates) > 0
		u := b.templateUse(name, dir, fp)
		s.tmpl.perNode = s.tmpl.perNode || u.perNode
		s.tmpl.shared = s.tmpl.shared || u.shared
		s.imageFiles = append(s.imageFiles, u.imageFiles...)
		ident = append(ident, name, fp.hash)
	}
	s.ident = hashKey(ident...)
	return s, nil
}

// mergedEntry is one output path of a merged overlay set.
type mergedEntry struct {
	entry           // as found in the overlay (rel is the source path)
	overlay  int    // index of the overlay it comes from
	out      string // output path (rel without .ww for templates)
	template bool
}

// listing is the merged view of an overlay set: for each output path the
// entry of the last overlay that has it, parents before children. The
// listing of a set in one state (set.ident) is kept with the templates
// parsed so far, so rendering a node's templates needs no file system access.
type listing struct {
	names   []string
	dirs    []string
	entries []*mergedEntry

	mu     sync.Mutex
	parsed map[*mergedEntry]*parsedTemplate
}

func newListing(names, dirs []string) (*listing, error) {
	l := &listing{names: names, dirs: dirs, parsed: map[*mergedEntry]*parsedTemplate{}}
	byOut := map[string]*mergedEntry{}
	for i, dir := range dirs {
		err := walkTree(dir, func(e *entry, _ *os.Root, _ string) error {
			me := &mergedEntry{entry: *e, overlay: i, out: e.rel}
			if out, ok := templateOut(e); ok {
				me.out, me.template = out, true
			}
			// Later wins; in one overlay "x.ww" is walked after "x" and wins.
			byOut[me.out] = me
			return nil
		})
		if err != nil {
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
		l.entries = append(l.entries, me)
	}
	return l, nil
}

// maxListings bounds the cached listings (one per overlay set and state).
const maxListings = 256

// listing returns the cached listing of set, making it if needed.
func (b *Builder) listing(set *overlaySet) (*listing, error) {
	b.tmplMu.Lock()
	l := b.listings[set.ident]
	b.tmplMu.Unlock()
	if l != nil {
		return l, nil
	}
	l, err := newListing(set.names, set.dirs)
	if err != nil {
		return nil, err
	}
	b.tmplMu.Lock()
	if len(b.listings) >= maxListings {
		clear(b.listings)
	}
	b.listings[set.ident] = l
	b.tmplMu.Unlock()
	return l, nil
}

// merged reads a listing's files: it opens the overlays (os.Root) as needed.
type merged struct {
	*listing
	roots []*os.Root
}

func (l *listing) open() *merged {
	return &merged{listing: l, roots: make([]*os.Root, len(l.dirs))}
}

func (m *merged) Close() {
	for _, r := range m.roots {
		if r != nil {
			r.Close()
		}
	}
}

func (m *merged) opener(e *mergedEntry) func() (*os.File, error) {
	return func() (*os.File, error) {
		if m.roots[e.overlay] == nil {
			r, err := os.OpenRoot(m.dirs[e.overlay])
			if err != nil {
				return nil, err
			}
			m.roots[e.overlay] = r
		}
		return openRead(m.roots[e.overlay], e.rel)
	}
}

// parseError is a template that does not parse (the error names it and the
// line); other errors of merged.template are read errors.
type parseError struct{ error }

func (e parseError) Unwrap() error { return e.error }

// template returns the parsed template e, reading it the first time.
func (m *merged) template(b *Builder, e *mergedEntry) (*parsedTemplate, error) {
	m.mu.Lock()
	pt := m.parsed[e]
	m.mu.Unlock()
	if pt != nil {
		return pt, nil
	}
	src, err := readSmall(m.opener(e), e.rel)
	if err != nil {
		return nil, fmt.Errorf("overlay %q: %w", m.names[e.overlay], err)
	}
	pt, err = b.parse(m.templateName(e), src)
	if err != nil {
		return nil, parseError{err}
	}
	m.mu.Lock()
	m.parsed[e] = pt
	m.mu.Unlock()
	return pt, nil
}

// member selects the entries of one member of an overlay artifact.
type member int

const (
	memberFiles  member = iota // plain entries (not templates)
	memberShared               // templates not using .Node, rendered
	memberNode                 // templates that may use .Node, rendered
)

// writeArchive writes one cpio archive of the merged entries that belong to
// member mb, templates rendered with rc.
func (m *merged) writeArchive(w io.Writer, b *Builder, mb member, rc *renderCtx) error {
	cw := newArchive(w)
	for _, e := range m.entries {
		var err error
		switch {
		case !e.template:
			if mb == memberFiles {
				err = writeEntry(cw, &e.entry, e.out, m.opener(e))
			}
		case mb != memberFiles:
			pt, perr := m.template(b, e)
			if perr != nil && !errors.As(perr, new(parseError)) {
				err = perr // unreadable: retried or reported
				break
			}
			// A template that does not parse belongs to the node member,
			// as templateUse says, which reports the error.
			if (perr != nil || pt.perNode) != (mb == memberNode) {
				continue
			}
			var out []byte
			if out, err = m.execute(b, e, pt, perr, rc); err != nil {
				break
			}
			err = writeRendered(cw, pt, e, out) // multifile.go
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

// templateName names template e in errors: overlays/NAME/path.ww.
func (m *merged) templateName(e *mergedEntry) string {
	return "overlays/" + m.names[e.overlay] + "/" + e.rel
}

// render reads and renders the template e.
func (m *merged) render(b *Builder, e *mergedEntry, rc *renderCtx) ([]byte, error) {
	pt, err := m.template(b, e)
	if err != nil && !errors.As(err, new(parseError)) {
		return nil, err
	}
	return m.execute(b, e, pt, err, rc)
}

// execute renders pt (or reports perr, the template's parse error) as a
// template error naming the overlay and the node.
func (m *merged) execute(b *Builder, e *mergedEntry, pt *parsedTemplate, perr error, rc *renderCtx) ([]byte, error) {
	var out []byte
	var err error
	if pe, ok := perr.(parseError); ok {
		err = pe.error
	} else {
		out, err = b.execute(pt, rc)
	}
	if err != nil {
		return nil, templateError(err, "overlay %q: node %q", m.names[e.overlay], rc.data.Node.Name)
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

// SystemOverlay returns the node's system overlay; see overlay.
func (b *Builder) SystemOverlay(ctx context.Context, snap *config.Snapshot, n *config.Node) (*Artifact, error) {
	a, err := b.overlay(ctx, b.newFingerprints(), snap, n, systemOverlay, false)
	if err != nil {
		b.m.errors.WithLabelValues("system").Inc()
	}
	return a, err
}

// RuntimeOverlay returns the node's runtime overlay; see overlay.
func (b *Builder) RuntimeOverlay(ctx context.Context, snap *config.Snapshot, n *config.Node) (*Artifact, error) {
	a, err := b.overlay(ctx, b.newFingerprints(), snap, n, runtimeOverlay, false)
	if err != nil {
		b.m.errors.WithLabelValues("runtime").Inc()
	}
	return a, err
}

// overlayKind is the system or the runtime overlay.
type overlayKind struct {
	what     string // "system", "runtime"
	fileName string
	names    func(*config.Node) []string
}

var (
	systemOverlay  = overlayKind{"system", SystemName, func(n *config.Node) []string { return n.SystemOverlays }}
	runtimeOverlay = overlayKind{"runtime", RuntimeName, func(n *config.Node) []string { return n.RuntimeOverlays }}
)

// overlay returns the node's system or runtime overlay: up to three
// concatenated gzip members, each holding one cpio archive of the merged
// overlays, in this order:
//
//   - the plain files, built once per overlay content and shared by every
//     node with the same overlay list (the agent binary, static files);
//   - the templates that do not use .Node (e.g. /etc/hosts of all nodes),
//     rendered and stored once per overlay content and configuration
//     (server settings, nodes.toml), shared by every node;
//   - the templates that may use .Node, rendered for this node.
//
// A member with nothing to hold is left out (but never all three). With
// check (BuildAll), the node's member is rendered to check its templates and
// not stored (a new process rebuilds per-node members anyway), and the
// artifact is nil.
func (b *Builder) overlay(ctx context.Context, fps *fingerprints, snap *config.Snapshot, n *config.Node, ok overlayKind, check bool) (*Artifact, error) {
	rc, err := b.renderCtx(snap, n)
	if err != nil {
		return nil, err
	}
	rc.data.runtime = ok.what == runtimeOverlay.what // host keys only there (hostkeys.go)
	set, err := b.overlaySet(ctx, fps, ok.names(n))
	if err != nil {
		return nil, fmt.Errorf("%s overlay: %w", ok.what, err)
	}
	write := func(mb member) func(io.Writer) error {
		return func(w io.Writer) error {
			l, err := b.listing(set)
			if err != nil {
				return err
			}
			m := l.open()
			defer m.Close()
			return m.writeArchive(w, b, mb, rc)
		}
	}
	level := strconv.Itoa(gzipLevel)
	var parts []*part
	add := func(k kind, key string, mb member) error {
		p, err := b.get(ctx, k, key, write(mb))
		if err != nil {
			return fmt.Errorf("%s overlay %v: %w", ok.what, set.names, err)
		}
		parts = append(parts, p)
		return nil
	}
	if set.files || !set.templates {
		if err := add(kindFiles, hashKey("ww-overlay-files/1", level, set.ident), memberFiles); err != nil {
			return nil, err
		}
	}
	if set.tmpl.shared {
		if err := add(kindRendered, hashKey("ww-overlay-rendered/1", level, set.ident, rc.shared), memberShared); err != nil {
			return nil, err
		}
	}
	if set.tmpl.perNode {
		if check {
			if err := write(memberNode)(io.Discard); err != nil {
				return nil, fmt.Errorf("%s overlay %v: %w", ok.what, set.names, err)
			}
			b.checked.Add(1)
			return nil, nil
		}
		inputs := rc.nodeInputs()
		if len(set.imageFiles) > 0 {
			stamp, err := imageStamp(rc.data.imageDir, set.imageFiles)
			if err != nil {
				return nil, templateError(err, "node %q: image %q", n.Name, n.Image)
			}
			inputs += "\x00image:" + stamp
		}
		if err := add(kindNode, hashKey("ww-overlay-node/1", level, set.ident, inputs), memberNode); err != nil {
			return nil, err
		}
	}
	if check {
		return nil, nil
	}
	return b.artifact(ok.fileName, parts...), nil
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
	rc.data.runtime = slices.Contains(n.RuntimeOverlays, overlay) && !slices.Contains(n.SystemOverlays, overlay)
	dir := b.overlayDir(overlay)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return notFound("overlay %q does not exist (no directory overlays/%s)", overlay, overlay)
		}
		return fmt.Errorf("overlay %q: %w", overlay, err)
	}
	l, err := newListing([]string{overlay}, []string{dir})
	if err != nil {
		return err
	}
	m := l.open()
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
			pt, _ := m.template(b, e)
			for _, f := range outputFiles(pt, e, out) {
				fmt.Fprintf(w, "%s %-9s %10d %s (template %s)\n", e.mode, owner, len(f.data), f.name, e.rel)
				fmt.Fprintf(w, "--- %s\n", f.name)
				w.Write(f.data)
				if len(f.data) > 0 && f.data[len(f.data)-1] != '\n' {
					io.WriteString(w, "\n")
				}
				fmt.Fprintf(w, "--- end %s\n", f.name)
			}
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
