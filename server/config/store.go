package config

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// File names inside the served tree.
const (
	ServerFile = "wwserver.toml"
	NodesFile  = "nodes.toml"
	// NodesDir holds more nodes files (*.toml), merged with nodes.toml;
	// the CLI and discovery write nodes.d/managed.toml (server/nodeedit).
	NodesDir = "nodes.d"
)

// DefaultSettle is how long a file rewritten in place must stay unchanged
// (size, mtime, ctime) before an automatic reload reads it: `cat new >
// nodes.toml` truncates first and writes after, and a reload in between
// would see an empty or half-written file.
const DefaultSettle = time.Second

// Snapshot is one consistent, immutable generation of the configuration.
type Snapshot struct {
	Server *Server
	Nodes  *Nodes
	// Gen increases by one for every successful load.
	Gen uint64
	// LoadedAt is when this generation was loaded.
	LoadedAt time.Time
}

// Store holds the current configuration of a served tree and reloads it
// when its files change. A bad file never replaces the last good config.
//
// Automatic reloads (Fresh, Watch) read a file only once it is stable: a
// file replaced by rename (a new inode: editors, config management,
// atomic writers) is complete at once; a file rewritten in place must keep
// the same stamp for Settle, and must not change while it is read. Reload
// (SIGHUP, the admin's explicit request) does not wait for the settle period.
type Store struct {
	root   string
	log    *slog.Logger
	now    func() time.Time
	settle time.Duration
	// state is the last load attempt: its stamps, the snapshot served and
	// the error, published together so a request that finds the new stamps
	// also finds what was loaded from them (never an older generation).
	state atomic.Pointer[loadState]

	mu      sync.Mutex  // serialises reloads; guards pending, since
	pending []statStamp // stamps seen changed but not yet settled
	// extra are the nodes.d files of the last load (see configFiles).
	extra atomic.Pointer[[]string]
	since time.Time // when pending was first seen
	// OnReload, when set, is called after each successful reload.
	OnReload func(*Snapshot)
}

// loadState is one load attempt as requests see it.
type loadState struct {
	stamps []statStamp // of the files the attempt read
	snap   *Snapshot   // the last good config (nil before the first)
	err    error       // of the attempt; nil after a good load
}

// statStamp identifies one version of a file: size, mtime, inode and ctime
// (not atime, which changes on every read). Compared as a value, so the
// per-request check costs one stat call per file and no allocation.
type statStamp struct {
	missing          bool
	size, mtime, ino int64
	ctime            syscall.Timespec
}

// configFiles are the files a snapshot is read from, relative to the root,
// in load order: wwserver.toml, nodes.toml, the nodes.d directory itself
// (its stamp changes when a file is added or removed) and the nodes.d/*.toml
// files of the last load. Everything that decides when to reload goes
// through this list.
func (s *Store) configFiles() []string {
	files := []string{ServerFile, NodesFile, NodesDir}
	if extra := s.extra.Load(); extra != nil {
		files = append(files, *extra...)
	}
	return files
}

// listExtra records which nodes.d files exist, for configFiles. Caller holds mu.
func (s *Store) listExtra() {
	paths, _ := filepath.Glob(filepath.Join(s.root, NodesDir, "*.toml"))
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Join(NodesDir, filepath.Base(p))
	}
	s.extra.Store(&names)
}

// NewStore loads the tree at root. It fails when the initial config is bad.
func NewStore(root string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Store{root: root, log: log, now: time.Now, settle: DefaultSettle}
	s.state.Store(&loadState{})
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Root is the served tree's directory.
func (s *Store) Root() string { return s.root }

// Current is the part of *Store a service that only reads the config
// needs (dhcp, tftp): the snapshot in effect.
type Current interface {
	Current() *Snapshot
}

// Current returns the current snapshot without touching the disk.
func (s *Store) Current() *Snapshot { return s.state.Load().snap }

// LastError is the error of the last failed reload, nil after a good one.
func (s *Store) LastError() error {
	return s.state.Load().err
}

// Fresh returns the current snapshot after reloading if a config file
// changed on disk since the last load and is stable (a stat of each, cheap
// enough for every request). This makes edits visible on the very next
// request even before the file watcher fires.
func (s *Store) Fresh() *Snapshot {
	if s.changed() {
		_, _ = s.reload(false)
	}
	return s.state.Load().snap
}

// Pending reports whether a changed config file is waiting to settle.
func (s *Store) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending != nil
}

// changed reports whether any config file's stamp differs from the last load attempt.
func (s *Store) changed() bool {
	last := s.state.Load().stamps
	files := s.configFiles()
	if len(files) != len(last) {
		return true
	}
	for i, name := range files {
		if i >= len(last) || s.stat(name) != last[i] {
			return true
		}
	}
	return false
}

func (s *Store) stat(name string) statStamp {
	fi, err := os.Stat(filepath.Join(s.root, name))
	if err != nil {
		return statStamp{missing: true}
	}
	stamp := statStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		stamp.ino, stamp.ctime = int64(sys.Ino), sys.Ctim
	}
	return stamp
}

func (s *Store) readStamps() []statStamp {
	files := s.configFiles()
	out := make([]statStamp, len(files))
	for i, name := range files {
		out[i] = s.stat(name)
	}
	return out
}

func sameStamps(a, b []statStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Reload reads the config files now, even when unchanged (boot files are
// resolved again) and without waiting for them to settle; on error the last
// good config stays and the error is logged and returned.
func (s *Store) Reload() error {
	_, err := s.reload(true)
	return err
}

// reload loads the files if they changed. Without force it waits for them
// to be stable and reports pending=true while they are not.
func (s *Store) reload(force bool) (pending bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listExtra()
	before := s.readStamps()
	last := s.state.Load().stamps
	prev := s.state.Load().snap
	if !force && sameStamps(before, last) && prev != nil {
		s.pending = nil
		return false, nil
	}
	if !force && !s.settled(before, last) {
		return true, nil
	}
	snap, err := Load(s.root)
	// Written while we read: what we read may be a mix. An explicit Reload
	// (SIGHUP, the CLI's own writers, which replace files by rename) reads
	// again a few times; an automatic one waits for the next event or request.
	for try := 0; force && try < 10; try++ {
		after := s.readStamps()
		if sameStamps(before, after) {
			break
		}
		s.listExtra()
		before = s.readStamps()
		snap, err = Load(s.root)
	}
	if after := s.readStamps(); !sameStamps(before, after) {
		s.pending, s.since = after, s.now()
		if force { // the caller asked for a load and did not get one
			return true, &Error{File: filepath.Join(s.root, NodesDir),
				Msg: "config files kept changing while being read; the last good config stays, try again"}
		}
		return true, nil
	}
	s.pending = nil
	if err == nil && prev != nil && len(prev.Nodes.List) > 0 && len(snap.Nodes.List) == 0 {
		err = &Error{File: filepath.Join(s.root, NodesFile), Msg: fmt.Sprintf(
			"no nodes, but the last good config has %d: refused (an empty or half-written file?); "+
				"restart wwserver to serve an empty node list", len(prev.Nodes.List))}
	}
	if err != nil {
		// Remember the stamps even on failure so a bad file is reported once, not per request.
		s.state.Store(&loadState{stamps: before, snap: prev, err: err})
		if prev != nil {
			s.log.Error("config reload failed; keeping last good config", "err", err)
		}
		return false, err
	}
	snap.LoadedAt = s.now()
	if prev != nil {
		snap.Gen = prev.Gen + 1
	}
	s.state.Store(&loadState{stamps: before, snap: snap})
	if prev != nil {
		s.log.Info("config reloaded", "gen", snap.Gen, "nodes", len(snap.Nodes.List))
	}
	if s.OnReload != nil {
		s.OnReload(snap)
	}
	return false, nil
}

// settled reports whether the files with stamps now may be read: each is
// unchanged since the last load, was replaced by rename (a new inode, whose
// writer finished before renaming), was last changed (ctime) at least the
// settle period ago, or has kept its stamp for the settle period while
// watched. Caller holds mu.
func (s *Store) settled(now, last []statStamp) bool {
	inPlace := false
	files := s.configFiles()
	for i := range now {
		if i < len(files) && files[i] == NodesDir {
			continue // a directory's stamp changes when files come and go: nothing to settle
		}
		// Rewritten in place (or created where none was: `cat > nodes.toml`
		// after a delete), and recently.
		if i < len(last) && len(now) == len(last) && now[i] != last[i] && !now[i].missing &&
			(now[i].ino == last[i].ino || last[i].missing) &&
			s.now().Sub(time.Unix(now[i].ctime.Unix())) < s.settle {
			inPlace = true
		}
	}
	if !inPlace || s.state.Load().snap == nil {
		return true
	}
	if !sameStamps(now, s.pending) {
		s.pending, s.since = now, s.now()
		return false
	}
	return s.now().Sub(s.since) >= s.settle
}

// Load reads the served tree's configuration once, without a Store: the
// CLI's commands use it, and the Store loads every generation through it.
func Load(root string) (*Snapshot, error) {
	srv, err := LoadServer(filepath.Join(root, ServerFile))
	if err != nil {
		return nil, err
	}
	nodes, err := LoadNodesTree(root)
	if err != nil {
		return nil, err
	}
	return &Snapshot{Server: srv, Nodes: nodes}, nil
}

// Watch reloads on file changes until done is closed. Editors replace files
// by rename, so the directory is watched, not the files. A file written in
// place is reloaded once it has settled.
func (s *Store) Watch(done <-chan struct{}) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	if err := w.Add(s.root); err != nil {
		w.Close()
		return fmt.Errorf("watch config dir %s: %w", s.root, err)
	}
	nodesDir := filepath.Join(s.root, NodesDir)
	_ = w.Add(nodesDir) // may not exist yet: added when it appears
	watched := func(name string) bool {
		base := filepath.Base(name)
		return name == nodesDir || base == ServerFile || base == NodesFile ||
			(filepath.Dir(name) == nodesDir && strings.HasSuffix(base, ".toml"))
	}
	go func() {
		defer w.Close()
		// retry fires when a file seen changing may have settled.
		retry := time.NewTimer(time.Hour)
		retry.Stop()
		defer retry.Stop()
		poll := func() {
			if pending, _ := s.reload(false); pending {
				retry.Reset(s.settle)
			}
		}
		for {
			select {
			case <-done:
				return
			case <-retry.C:
				poll()
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Name == nodesDir && ev.Has(fsnotify.Create) {
					_ = w.Add(nodesDir)
				}
				if watched(ev.Name) {
					poll()
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				s.log.Warn("config watcher", "err", err)
			}
		}
	}()
	return nil
}
