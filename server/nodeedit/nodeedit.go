// Package nodeedit changes nodes and profiles on behalf of the CLI and of
// discovery without ever touching what the admin wrote by hand.
//
// Layout: nodes.toml is the admin's file and is only read. Files under
// nodes.d/ are machine-managed: wwserver rewrites them whole (comments there
// are not kept), new entries go to nodes.d/managed.toml, and an entry found in
// another nodes.d file is edited where it is. The loader (server/config)
// merges all of them; a name may be defined in one file only.
//
// Every edit holds an exclusive flock on nodes.d/.lock (so two CLI runs, or
// the CLI and a discovering server, never interleave), reads every file
// once, applies the change to the decoded entries, validates the result
// with the same validator as a hand edit (config.ResolveNodes), checks that
// every entry it touched reads back from its text unchanged, and only then
// replaces the changed files with server/atomicfile (written streaming by
// config.WriteNodesFile). An edit of one node in a tree of 100,000 costs one
// read and one validation of the tree and one write of the changed file
// (BENCHMARKS.md, "Editing nodes"). A running server picks them up through its
// config Store (file watch plus a stat per request).
package nodeedit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/wwcluster/ww/server/atomicfile"
	"github.com/wwcluster/ww/server/config"
)

// ManagedFile is where new nodes and profiles are written, inside nodes.d/.
const ManagedFile = "managed.toml"

const lockFile = ".lock"

const managedHeader = `# Written by wwserver (node/profile add, set, delete, import; discovery).
# This file is rewritten whole on every edit: hand edits to values are kept,
# comments are not. Keep hand-written nodes and comments in nodes.toml.

`

// Kind is what an entry is.
type Kind int

// Entry kinds.
const (
	Node Kind = iota
	Profile
)

func (k Kind) String() string {
	if k == Profile {
		return "profile"
	}
	return "node"
}

// ErrNotFound is returned for a name that is defined nowhere.
var ErrNotFound = errors.New("not defined")

// Editor edits the nodes files of one served tree.
type Editor struct{ root string }

// New returns an editor for the served tree at root.
func New(root string) *Editor { return &Editor{root: root} }

// Root is the served tree.
func (e *Editor) Root() string { return e.root }

// ManagedPath is the file new entries are written to.
func (e *Editor) ManagedPath() string { return filepath.Join(e.root, config.NodesDir, ManagedFile) }

// Tree is what one edit sees and changes.
type Tree struct {
	srcs    []config.Source         // the files as read
	decoded []config.Decoded        // decoded from srcs; the nodes.d ones are edited in place
	cur     *config.Nodes           // Current, once resolved
	files   map[string]*config.File // nodes.d files by path (editable)
	dirty   map[string]bool
	where   map[string]string // "node/NAME", "profile/NAME" → defining file
	managed string
	changed []changedEntry // entries Get or Add handed out, to check they write back as they are
}

// changedEntry is an entry an edit may have changed.
type changedEntry struct {
	kind Kind
	name string
	e    *config.Entry
}

func key(k Kind, name string) string { return k.String() + "/" + name }

// Current is the node database before this edit, validated. It is resolved
// on first use (a tree of 100,000 nodes takes a few tenths of a second,
// which edits that do not ask for it save), from the files as they were
// read even when the edit has changed entries since.
func (t *Tree) Current() (*config.Nodes, error) {
	if t.cur != nil {
		return t.cur, nil
	}
	var (
		nodes *config.Nodes
		err   error
	)
	if len(t.changed) == 0 && len(t.dirty) == 0 {
		nodes, err = config.ResolveNodes(t.decoded)
	} else {
		nodes, err = config.ParseNodesFiles(t.srcs) // decoded entries have changed
	}
	if err != nil {
		return nil, fmt.Errorf("the current config is invalid, fix it first: %w", err)
	}
	t.cur = nodes
	return nodes, nil
}

func (f *Tree) table(path string, k Kind) map[string]*config.Entry {
	file := f.files[path]
	if k == Profile {
		if file.Profiles == nil {
			file.Profiles = map[string]*config.Entry{}
		}
		return file.Profiles
	}
	if file.Nodes == nil {
		file.Nodes = map[string]*config.Entry{}
	}
	return file.Nodes
}

// File returns the file that defines the entry, or "".
func (t *Tree) File(k Kind, name string) string { return t.where[key(k, name)] }

// Get returns the editable entry; the caller may change it in place. It
// fails for names defined nowhere or only in the hand-written nodes.toml.
func (t *Tree) Get(k Kind, name string) (*config.Entry, error) {
	path, ok := t.where[key(k, name)]
	if !ok {
		return nil, fmt.Errorf("%s %q: %w", k, name, ErrNotFound)
	}
	if _, editable := t.files[path]; !editable {
		return nil, fmt.Errorf("%s %q is written by hand in %s: edit it there (wwserver edits only %s/)", k, name, path, config.NodesDir)
	}
	t.dirty[path] = true
	tab := t.table(path, k)
	e := tab[name]
	if e == nil { // [nodes.X] with nothing in it
		e = &config.Entry{}
		tab[name] = e
	}
	t.changed = append(t.changed, changedEntry{k, name, e})
	return e, nil
}

// Add defines a new entry in nodes.d/managed.toml.
func (t *Tree) Add(k Kind, name string, e *config.Entry) error {
	if path, ok := t.where[key(k, name)]; ok {
		return fmt.Errorf("%s %q already exists (in %s)", k, name, path)
	}
	if _, ok := t.files[t.managed]; !ok {
		t.files[t.managed] = &config.File{}
	}
	if e == nil {
		e = &config.Entry{}
	}
	t.table(t.managed, k)[name] = e
	t.where[key(k, name)] = t.managed
	t.dirty[t.managed] = true
	t.changed = append(t.changed, changedEntry{k, name, e})
	return nil
}

// Delete removes an entry from its nodes.d file.
func (t *Tree) Delete(k Kind, name string) error {
	if _, err := t.Get(k, name); err != nil {
		return err
	}
	path := t.where[key(k, name)]
	delete(t.table(path, k), name)
	delete(t.where, key(k, name))
	return nil
}

// Names lists every defined name of kind k, sorted.
func (t *Tree) Names(k Kind) []string {
	var out []string
	prefix := k.String() + "/"
	for w := range t.where {
		if len(w) > len(prefix) && w[:len(prefix)] == prefix {
			out = append(out, w[len(prefix):])
		}
	}
	sort.Strings(out)
	return out
}

// Edit applies fn to the tree under the lock and, when fn succeeds and the
// result validates, writes the changed files. It returns the node database
// as written. Nothing is written when fn or validation fails.
func (e *Editor) Edit(fn func(*Tree) error) (*config.Nodes, error) { return e.edit(fn, true) }

// DryRun is Edit without writing: it returns what Edit would write, validated.
func (e *Editor) DryRun(fn func(*Tree) error) (*config.Nodes, error) { return e.edit(fn, false) }

func (e *Editor) edit(fn func(*Tree) error, write bool) (*config.Nodes, error) {
	unlock, err := e.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	t, err := e.readTree()
	if err != nil {
		return nil, err
	}
	if err := fn(t); err != nil {
		return nil, err
	}
	if len(t.dirty) == 0 {
		return t.Current()
	}
	next := t.next()
	nodes, err := config.ResolveNodes(next)
	if err != nil {
		if _, cerr := t.Current(); cerr != nil {
			return nil, cerr // it was wrong before this edit
		}
		return nil, fmt.Errorf("refused, the result would not load: %w", withLines(next, t.dirty, err))
	}
	// Every entry the edit touched must read back from its text as it is in
	// memory (what WriteNodesFile cannot write, e.g. invalid UTF-8, is
	// refused here); the others were read from text and are written the
	// same way (FuzzWriteNodesFile in server/config).
	if err := t.checkChanged(); err != nil {
		return nil, fmt.Errorf("refused: %w", err)
	}
	if !write {
		return nodes, nil
	}
	if err := writeDirty(next, t.dirty); err != nil {
		return nil, err
	}
	return nodes, nil
}

// readTree decodes every nodes file once; the change is made to the decoded
// entries, validated from them, and only the changed files are written.
func (e *Editor) readTree() (*Tree, error) {
	srcs, err := config.NodesSources(e.root)
	if err != nil {
		return nil, err
	}
	decoded := make([]config.Decoded, len(srcs))
	for i, src := range srcs {
		f, err := config.DecodeNodesFile(src)
		if err != nil {
			_, err = config.ParseNodesFiles(srcs) // every error, not only this file's
			return nil, fmt.Errorf("the current config is invalid, fix it first: %w", err)
		}
		decoded[i] = config.Decoded{Path: src.Path, Data: src.Data, File: f}
	}
	t := &Tree{srcs: srcs, decoded: decoded, files: map[string]*config.File{}, dirty: map[string]bool{},
		where: map[string]string{}, managed: e.ManagedPath()}
	for i, d := range decoded {
		if i > 0 {
			t.files[d.Path] = d.File
		}
		for name := range d.File.Nodes {
			t.where[key(Node, name)] = d.Path
		}
		for name := range d.File.Profiles {
			t.where[key(Profile, name)] = d.Path
		}
	}
	return t, nil
}

// next is the files as they will be after the edit: changed ones from
// memory, a new managed.toml included, in load order.
func (t *Tree) next() []config.Decoded {
	next := make([]config.Decoded, 0, len(t.decoded)+1)
	for _, d := range t.decoded {
		if t.dirty[d.Path] {
			d.Data = nil
		}
		next = append(next, d)
	}
	if f, ok := t.files[t.managed]; ok && !slices.ContainsFunc(next, func(d config.Decoded) bool { return d.Path == t.managed }) {
		next = append(next, config.Decoded{Path: t.managed, File: f}) // a new managed.toml
	}
	sort.SliceStable(next[1:], func(i, j int) bool { return next[1+i].Path < next[1+j].Path })
	return next
}

// writeDirty writes the changed files, each atomically.
func writeDirty(next []config.Decoded, dirty map[string]bool) error {
	for _, d := range next {
		if !dirty[d.Path] {
			continue
		}
		err := atomicfile.Write(d.Path, 0o600, func(w io.Writer) error {
			if _, err := io.WriteString(w, managedHeader); err != nil {
				return err
			}
			return config.WriteNodesFile(w, d.File)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// withLines returns the errors of the would-be files with their lines: the
// changed files are written out in memory and everything is parsed again
// (only when an edit is refused).
func withLines(next []config.Decoded, dirty map[string]bool, err error) error {
	srcs := make([]config.Source, 0, len(next))
	for _, d := range next {
		data := d.Data
		if dirty[d.Path] || data == nil {
			var buf bytes.Buffer
			buf.WriteString(managedHeader)
			if werr := config.WriteNodesFile(&buf, d.File); werr != nil {
				return err
			}
			data = buf.Bytes()
		}
		srcs = append(srcs, config.Source{Path: d.Path, Data: data})
	}
	if _, lerr := config.ParseNodesFiles(srcs); lerr != nil {
		return lerr
	}
	return err
}

// checkChanged encodes every entry the edit touched and reads it back.
func (t *Tree) checkChanged() error {
	var live []changedEntry // not deleted, once each
	seen := make(map[changedEntry]bool, len(t.changed))
	var text bytes.Buffer
	for _, c := range t.changed {
		path := t.where[key(c.kind, c.name)]
		if seen[c] || path == "" || t.table(path, c.kind)[c.name] != c.e {
			continue // seen, deleted, or replaced by a later Add
		}
		seen[c] = true
		live = append(live, c)
		b, err := config.EncodeEntry(tableName(c.kind), c.name, c.e)
		if err != nil {
			return fmt.Errorf("%s %q: %w", c.kind, c.name, err)
		}
		text.Write(b)
	}
	back, err := config.DecodeNodesFile(config.Source{Path: "(changed entries)", Data: text.Bytes()})
	if err != nil {
		return fmt.Errorf("the changed entries do not read back: %w", err)
	}
	for _, c := range live {
		m := back.Nodes
		if c.kind == Profile {
			m = back.Profiles
		}
		if !config.SameEntry(c.e, m[c.name]) {
			return fmt.Errorf("%s %q does not read back as it was written", c.kind, c.name)
		}
	}
	return nil
}

func tableName(k Kind) string {
	if k == Profile {
		return "profiles"
	}
	return "nodes"
}

// Locked runs fn while holding the tree's edit lock, so no cooperating
// writer (another CLI run or server) changes nodes files meanwhile: a
// reload inside fn reads a stable tree.
func (e *Editor) Locked(fn func() error) error {
	unlock, err := e.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

// lock takes the tree's edit lock (blocking) and returns its release.
func (e *Editor) lock() (func(), error) {
	dir := filepath.Join(e.root, config.NodesDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open edit lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing the file releases the flock
}
