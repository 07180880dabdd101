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
// the CLI and a discovering server, never interleave), re-reads every file,
// applies the change, validates the would-be files with the same validator
// as a hand edit (config.ParseNodesFiles) and only then replaces the changed
// files with server/atomicfile. A running server picks them up through its
// config Store (file watch plus a stat per request).
package nodeedit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/BurntSushi/toml"
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
	// Current is the node database before this edit (validated).
	Current *config.Nodes
	files   map[string]*config.File // nodes.d files by path (editable)
	dirty   map[string]bool
	where   map[string]string // "node/NAME", "profile/NAME" → defining file
	managed string
}

func key(k Kind, name string) string { return k.String() + "/" + name }

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
	return t.table(path, k)[name], nil
}

// Add defines a new entry in nodes.d/managed.toml.
func (t *Tree) Add(k Kind, name string, e *config.Entry) error {
	if path, ok := t.where[key(k, name)]; ok {
		return fmt.Errorf("%s %q already exists (in %s)", k, name, path)
	}
	if _, ok := t.files[t.managed]; !ok {
		t.files[t.managed] = &config.File{}
	}
	t.table(t.managed, k)[name] = e
	t.where[key(k, name)] = t.managed
	t.dirty[t.managed] = true
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
	srcs, err := config.NodesSources(e.root)
	if err != nil {
		return nil, err
	}
	cur, err := config.ParseNodesFiles(srcs)
	if err != nil {
		return nil, fmt.Errorf("the current config is invalid, fix it first: %w", err)
	}
	t := &Tree{Current: cur, files: map[string]*config.File{}, dirty: map[string]bool{},
		where: map[string]string{}, managed: e.ManagedPath()}
	for i, src := range srcs {
		var f config.File
		if _, err := toml.NewDecoder(bytes.NewReader(src.Data)).Decode(&f); err != nil {
			return nil, fmt.Errorf("read %s: %w", src.Path, err) // validated above; a race with a hand edit
		}
		if i > 0 {
			t.files[src.Path] = &f
		}
		for name := range f.Nodes {
			t.where[key(Node, name)] = src.Path
		}
		for name := range f.Profiles {
			t.where[key(Profile, name)] = src.Path
		}
	}
	if err := fn(t); err != nil {
		return nil, err
	}
	if len(t.dirty) == 0 {
		return cur, nil
	}
	out := make(map[string][]byte, len(t.dirty))
	for path := range t.dirty {
		data, err := encode(t.files[path])
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", path, err)
		}
		out[path] = data
	}
	// Validate exactly what will be on disk, with the same validator.
	next := make([]config.Source, 0, len(srcs)+1)
	for _, src := range srcs {
		if data, ok := out[src.Path]; ok {
			src.Data = data
			delete(out, src.Path)
		}
		next = append(next, src)
	}
	for path, data := range out { // a new managed.toml
		next = append(next, config.Source{Path: path, Data: data})
	}
	sort.SliceStable(next[1:], func(i, j int) bool { return next[1+i].Path < next[1+j].Path })
	nodes, err := config.ParseNodesFiles(next)
	if err != nil {
		return nil, fmt.Errorf("refused, the result would not load: %w", err)
	}
	if !write {
		return nodes, nil
	}
	for _, src := range next {
		if t.dirty[src.Path] {
			if err := atomicfile.WriteFile(src.Path, src.Data, 0o600); err != nil {
				return nil, err
			}
		}
	}
	return nodes, nil
}

func encode(f *config.File) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(managedHeader)
	enc := toml.NewEncoder(&buf)
	enc.Indent = ""
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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
