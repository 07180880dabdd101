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
type Store struct {
	root string
	log  *slog.Logger
	cur  atomic.Pointer[Snapshot]

	mu    sync.Mutex // serialises reloads
	stamp atomic.Value
	// extra are the nodes.d files of the last load, stat-checked by Fresh.
	extra   atomic.Pointer[[]string]
	lastErr atomic.Pointer[error]
	// OnReload, when set, is called after each successful reload.
	OnReload func(*Snapshot)
}

// fileStamp identifies one version of a file: size, mtime, inode and ctime
// (not atime, which changes on every read). Compared as a value, so the
// per-request check costs two stat calls and no allocation.
type fileStamp struct {
	server, nodes, dir statStamp
	extra              uint64 // FNV-1a over the stamps of the nodes.d files
}

type statStamp struct {
	missing          bool
	size, mtime, ino int64
	ctime            syscall.Timespec
}

// NewStore loads the tree at root. It fails when the initial config is bad.
func NewStore(root string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Store{root: root, log: log}
	s.stamp.Store(fileStamp{})
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Root is the served tree's directory.
func (s *Store) Root() string { return s.root }

// Current returns the current snapshot without touching the disk.
func (s *Store) Current() *Snapshot { return s.cur.Load() }

// LastError is the error of the last failed reload, nil after a good one.
func (s *Store) LastError() error {
	if p := s.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Fresh returns the current snapshot after reloading if either config file
// changed on disk since the last load (a stat of each, cheap enough for every
// request). This makes edits visible on the very next request even before
// the file watcher fires.
func (s *Store) Fresh() *Snapshot {
	if s.readStamp() != s.stamp.Load().(fileStamp) {
		_ = s.Reload()
	}
	return s.cur.Load()
}

func (s *Store) readStamp() fileStamp {
	st := func(name string) statStamp {
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
	fs := fileStamp{server: st(ServerFile), nodes: st(NodesFile), dir: st(NodesDir)}
	if extra := s.extra.Load(); extra != nil && !fs.dir.missing {
		h := uint64(14695981039346656037) // FNV-1a, one word at a time
		mix := func(v int64) { h = (h ^ uint64(v)) * 1099511628211 }
		for _, name := range *extra {
			x := st(filepath.Join(NodesDir, name))
			mix(x.size)
			mix(x.mtime)
			mix(x.ino)
			mix(x.ctime.Sec)
			mix(x.ctime.Nsec)
		}
		fs.extra = h
	}
	return fs
}

// listExtra records which nodes.d files exist, for readStamp.
func (s *Store) listExtra() {
	paths, _ := filepath.Glob(filepath.Join(s.root, NodesDir, "*.toml"))
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	s.extra.Store(&names)
}

// Reload reads both files; on error the last good config stays and the error
// is logged and returned.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listExtra()
	stamp := s.readStamp()
	if stamp == s.stamp.Load().(fileStamp) && s.cur.Load() != nil {
		return nil
	}
	srv, err := LoadServer(filepath.Join(s.root, ServerFile))
	var nodes *Nodes
	if err == nil {
		nodes, err = LoadNodesTree(s.root)
	}
	// Remember the stamp even on failure so a bad file is reported once, not per request.
	s.stamp.Store(stamp)
	if err != nil {
		s.lastErr.Store(&err)
		if s.cur.Load() != nil {
			s.log.Error("config reload failed; keeping last good config", "err", err)
		}
		return err
	}
	s.lastErr.Store(nil)
	prev := s.cur.Load()
	snap := &Snapshot{Server: srv, Nodes: nodes, LoadedAt: time.Now()}
	if prev != nil {
		snap.Gen = prev.Gen + 1
		s.log.Info("config reloaded", "gen", snap.Gen, "nodes", len(nodes.List))
	}
	s.cur.Store(snap)
	if s.OnReload != nil {
		s.OnReload(snap)
	}
	return nil
}

// Watch reloads on file changes until done is closed. Editors replace files
// by rename, so the directory is watched, not the files.
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
	go func() {
		defer w.Close()
		for {
			select {
			case <-done:
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				base := filepath.Base(ev.Name)
				switch {
				case ev.Name == nodesDir:
					if ev.Has(fsnotify.Create) {
						_ = w.Add(nodesDir)
					}
					_ = s.Reload()
				case base == ServerFile || base == NodesFile,
					filepath.Dir(ev.Name) == nodesDir && strings.HasSuffix(base, ".toml"):
					_ = s.Reload()
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
