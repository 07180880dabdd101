package artifact

import (
	"context"
	"errors"
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

// treeWatcher keeps inotify watches on every directory of the source trees
// the Builder has fingerprinted, so that a request for an unchanged tree costs
// a barrier instead of a walk.
//
// Never stale: a tree's remembered fingerprint is used only when no event for
// the tree arrived since the walk that made it started, and only after a
// barrier proved that every event queued before the request arrived has been
// handled. The kernel queues an inotify event before the system call that
// caused it returns, and one inotify instance delivers its events in order;
// so the barrier writes to a sentinel file watched by the same instance and
// waits for that write's event: every edit finished before the request
// arrived was queued before it.
//
// Anything the watches cannot follow precisely throws them all away ("reset";
// the next request of each tree walks it and watches it again): a watched
// directory renamed (inotify keeps watching it under its old name), a tree
// root or one of its parents created, renamed or removed, a queue overflow,
// a barrier that does not come back. A tree whose directories cannot all be
// watched (fs.inotify.max_user_watches) or that is not on a local file
// system (edits on another NFS client raise no event here) is walked on
// every request, as without a watcher, and retried after watchRetry.
// Writes through a shared mmap raise no event; nobody edits a tree that way.
type treeWatcher struct {
	root  string // the served tree; tree roots are below it
	state string // directory for the sentinel file
	log   *slog.Logger
	reset func() // metrics hook, called on every reset
	// addWatch adds one watch (a seam for tests: watch limits are
	// system-wide).
	addWatch func(w *fsnotify.Watcher, path string) error

	barriers freshGroup[struct{}, uint64]

	mu       sync.Mutex
	closed   bool
	epoch    uint64            // advanced by every reset; 0: never started
	w        *fsnotify.Watcher // nil: not running
	sentinel *os.File          // unlinked file whose writes are the barrier
	seen     uint64            // sentinel writes seen by the current instance
	seenCh   chan struct{}     // closed and replaced when seen or epoch changes
	dirs     map[string]bool   // watched directories (tree dirs and their parents)
	trees    map[string]*watchedTree
	startErr time.Time // after a failed start: no watcher until then
}

// watchedTree is what the watcher knows of one tree.
type watchedTree struct {
	gen     uint64 // events seen for the tree
	watched bool   // every directory of it is watched
	retry   time.Time
	fp      fingerprint
	fpGen   uint64 // gen when the walk that made fp started
	fpOK    bool
}

const (
	// barrierTimeout: a barrier taking longer means the watcher is stuck;
	// reset and walk.
	barrierTimeout = 2 * time.Second
	// watchRetry: how long a tree that could not be watched is walked per
	// request before watching it is tried again.
	watchRetry = time.Minute
)

func newTreeWatcher(root, state string, log *slog.Logger, reset func()) *treeWatcher {
	return &treeWatcher{
		root: root, state: state, log: log, reset: reset,
		addWatch: (*fsnotify.Watcher).Add,
		seenCh:   make(chan struct{}),
		dirs:     map[string]bool{},
		trees:    map[string]*watchedTree{},
	}
}

// Close stops watching. Later calls walk.
func (tw *treeWatcher) Close() {
	tw.mu.Lock()
	tw.closed = true
	tw.mu.Unlock()
	tw.resetEpoch(0, "")
}

// walkToken carries what prepare learnt to the walk and to end.
type walkToken struct {
	tw        *treeWatcher
	dir       string
	epoch     uint64            // 0: no watcher; the walk's result is not remembered
	gen       uint64            // the tree's gen before the walk
	establish *fsnotify.Watcher // non-nil: the walk adds watches here
	addErr    atomic.Pointer[error]
}

// sync returns once every event queued before it was called has been
// handled (a barrier, shared by concurrent callers), with the epoch it holds
// for; ok is false when no watcher runs.
func (tw *treeWatcher) sync() (epoch uint64, ok bool) {
	epoch, err := tw.barriers.Do(context.Background(), struct{}{}, tw.barrier)
	return epoch, err == nil
}

// lookup returns the tree's remembered fingerprint if no event for the tree
// was handled since the walk that made it started, as of a sync that
// returned epoch.
func (tw *treeWatcher) lookup(dir string, epoch uint64) (fingerprint, bool) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	t := tw.trees[dir]
	if tw.epoch != epoch || t == nil || !t.watched || !t.fpOK || t.fpGen != t.gen {
		return fingerprint{}, false
	}
	return t.fp, true
}

// prepare is called before a walk of dir. The tree's gen is read without a
// barrier: an event still queued from before the walk only makes its result
// look stale later (one more walk), never fresh.
func (tw *treeWatcher) prepare(dir string) *walkToken {
	tok := &walkToken{tw: tw, dir: dir}
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.w == nil && tw.start() != nil {
		return tok
	}
	t := tw.trees[dir]
	if t == nil {
		t = &watchedTree{}
		tw.trees[dir] = t
	}
	tok.epoch, tok.gen = tw.epoch, t.gen
	if t.watched {
		return tok
	}
	if now := time.Now(); now.After(t.retry) {
		if err := localFS(dir); err != nil {
			t.retry = now.Add(watchRetry)
			tw.log.Debug("tree not watched; walked per request", "dir", dir, "err", err)
			return tok
		}
		tok.establish = tw.w
	}
	return tok
}

// watchDir is the walk's hook (non-nil only when establishing): it watches
// the directory at rel ("" is the tree root, with its parents up to the
// served tree) before the walk reads it. After the first failure it adds
// nothing more; end learns of it.
func (tok *walkToken) watchDir(rel string) {
	if tok.addErr.Load() != nil {
		return
	}
	var paths []string
	if rel == "" {
		for p := filepath.Dir(tok.dir); tok.tw.below(p); p = filepath.Dir(p) {
			paths = append(paths, p)
		}
		paths = append(paths, tok.dir)
	} else {
		paths = []string{filepath.Join(tok.dir, filepath.FromSlash(rel))}
	}
	for _, p := range paths {
		// Known before the watch exists, so a rename seen right after Add
		// resets.
		tok.tw.mu.Lock()
		if tok.tw.epoch != tok.epoch {
			tok.tw.mu.Unlock()
			err := errors.New("watcher reset during the walk")
			tok.addErr.CompareAndSwap(nil, &err)
			return
		}
		tok.tw.dirs[p] = true
		tok.tw.mu.Unlock()
		if err := tok.tw.addWatch(tok.establish, p); err != nil {
			err = fmt.Errorf("watch %s: %w", p, err)
			tok.addErr.CompareAndSwap(nil, &err)
			return
		}
	}
}

// end records the walk's result.
func (tw *treeWatcher) end(tok *walkToken, fp fingerprint, err error) {
	if tok.epoch == 0 || err != nil {
		return
	}
	var giveBack []string
	defer func() {
		for _, d := range giveBack {
			_ = tok.establish.Remove(d) // already gone: nothing to give back
		}
	}()
	tw.mu.Lock()
	defer tw.mu.Unlock()
	t := tw.trees[tok.dir]
	if tw.epoch != tok.epoch || t == nil {
		return
	}
	if tok.establish != nil {
		if p := tok.addErr.Load(); p != nil {
			t.retry = time.Now().Add(watchRetry)
			tw.log.Warn("cannot watch source tree; it is walked on every request (raise fs.inotify.max_user_watches?)",
				"dir", tok.dir, "err", *p, "retry_in", watchRetry)
			// Give the watches it got back, for other trees (after
			// unlocking: see the defer above).
			for d := range tw.dirs {
				if d == tok.dir || strings.HasPrefix(d, tok.dir+"/") {
					giveBack = append(giveBack, d)
					delete(tw.dirs, d)
				}
			}
			return
		}
		t.watched = true
	}
	if t.watched {
		t.fp, t.fpGen, t.fpOK = fp, tok.gen, true
	}
}

// barrier returns once every event queued before it was called has been
// handled, with the epoch it holds for; an error means no watcher.
func (tw *treeWatcher) barrier() (uint64, error) {
	tw.mu.Lock()
	if tw.w == nil {
		if err := tw.start(); err != nil {
			tw.mu.Unlock()
			return 0, err
		}
	}
	epoch, seen, ch, f := tw.epoch, tw.seen, tw.seenCh, tw.sentinel
	tw.mu.Unlock()
	if _, err := f.WriteAt([]byte{0}, 0); err != nil {
		tw.resetEpoch(epoch, "barrier write failed: "+err.Error())
		return 0, err
	}
	timeout := time.NewTimer(barrierTimeout)
	defer timeout.Stop()
	for {
		select {
		case <-ch:
		case <-timeout.C:
			tw.resetEpoch(epoch, "barrier timed out")
			return 0, errors.New("watch barrier timed out")
		}
		tw.mu.Lock()
		switch {
		case tw.epoch != epoch:
			tw.mu.Unlock()
			return 0, errors.New("watcher reset")
		case tw.seen > seen:
			tw.mu.Unlock()
			return epoch, nil
		}
		ch = tw.seenCh
		tw.mu.Unlock()
	}
}

// start starts a new inotify instance (tw.mu held).
func (tw *treeWatcher) start() error {
	if tw.closed {
		return errors.New("watcher closed")
	}
	if time.Now().Before(tw.startErr) {
		return errors.New("watcher unavailable")
	}
	err := func() error {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			return err
		}
		f, err := os.CreateTemp(tw.state, "watch-barrier-*")
		if err == nil {
			err = w.Add(f.Name())
			os.Remove(f.Name()) // the watch and f keep the inode
		}
		if err != nil {
			w.Close()
			if f != nil {
				f.Close()
			}
			return err
		}
		tw.epoch++
		tw.w, tw.sentinel, tw.seen = w, f, 0
		go tw.loop(w, f.Name(), tw.epoch)
		return nil
	}()
	if err != nil {
		tw.startErr = time.Now().Add(watchRetry)
		tw.log.Warn("cannot watch source trees; they are walked on every request", "err", err, "retry_in", watchRetry)
	}
	return err
}

// loop handles the events of one instance until it is closed. Overflow
// errors come in order with the events (fsnotify's channels are unbuffered).
func (tw *treeWatcher) loop(w *fsnotify.Watcher, sentinel string, epoch uint64) {
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Name == sentinel {
				if ev.Has(fsnotify.Write) {
					tw.mu.Lock()
					if tw.epoch == epoch {
						tw.seen++
						close(tw.seenCh)
						tw.seenCh = make(chan struct{})
					}
					tw.mu.Unlock()
				}
				continue
			}
			tw.event(w, ev, epoch)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			tw.resetEpoch(epoch, err.Error())
		}
	}
}

// event handles one event of a tree or of a tree's parent.
func (tw *treeWatcher) event(w *fsnotify.Watcher, ev fsnotify.Event, epoch uint64) {
	var newDir bool
	if ev.Has(fsnotify.Create) {
		fi, err := os.Lstat(ev.Name)
		newDir = err == nil && fi.IsDir()
	}
	tw.mu.Lock()
	if tw.epoch != epoch {
		tw.mu.Unlock()
		return
	}
	var t *watchedTree
	var troot string
	for p := ev.Name; tw.below(p); p = filepath.Dir(p) {
		if t = tw.trees[p]; t != nil {
			troot = p
			break
		}
	}
	reason := ""
	switch {
	case t == nil:
		// A parent's entry: a tree root or one of its parents changing
		// makes the tree a different directory.
		for dir := range tw.trees {
			if dir == ev.Name || strings.HasPrefix(dir, ev.Name+"/") {
				reason = "parent of a source tree changed: " + ev.Name
				break
			}
		}
	case ev.Name == troot && !ev.Has(fsnotify.Write) && !ev.Has(fsnotify.Chmod):
		reason = "source tree root changed: " + ev.Name
	case ev.Has(fsnotify.Rename) && tw.dirs[ev.Name]:
		reason = "watched directory renamed: " + ev.Name
	}
	if t != nil {
		t.gen++
	}
	if ev.Has(fsnotify.Remove) {
		delete(tw.dirs, ev.Name)
	}
	tw.mu.Unlock()
	if reason != "" {
		tw.resetEpoch(epoch, reason)
		return
	}
	if newDir && t != nil {
		// Watch the new subtree. What was created in it before its watch
		// is covered: gen moved, so the next request walks the tree, and
		// it starts after these watches exist.
		if err := tw.watchNew(w, ev.Name, epoch); err != nil {
			tw.resetEpoch(epoch, "watch new directory: "+err.Error())
		}
	}
}

// watchNew watches the directory at top and every directory below it.
func (tw *treeWatcher) watchNew(w *fsnotify.Watcher, top string, epoch uint64) error {
	return filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil // removed since: its parent's event says so
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		tw.mu.Lock()
		if tw.epoch != epoch {
			tw.mu.Unlock()
			return filepath.SkipAll
		}
		tw.dirs[p] = true
		tw.mu.Unlock()
		if err := tw.addWatch(w, p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	})
}

// resetEpoch throws the watches of epoch away (epoch 0: whatever runs).
func (tw *treeWatcher) resetEpoch(epoch uint64, reason string) {
	tw.mu.Lock()
	if tw.w == nil || (epoch != 0 && tw.epoch != epoch) {
		tw.mu.Unlock()
		return
	}
	w, f := tw.w, tw.sentinel
	tw.w, tw.sentinel = nil, nil
	tw.epoch++
	for _, t := range tw.trees {
		t.watched, t.fpOK = false, false
	}
	clear(tw.dirs)
	close(tw.seenCh)
	tw.seenCh = make(chan struct{})
	tw.mu.Unlock()
	w.Close()
	f.Close()
	if reason != "" {
		tw.log.Info("source tree watches reset; the next request of each tree walks it", "reason", reason)
		if tw.reset != nil {
			tw.reset()
		}
	}
}

// below reports whether path p is below the served tree's root.
func (tw *treeWatcher) below(p string) bool {
	return p != tw.root && strings.HasPrefix(p, strings.TrimSuffix(tw.root, "/")+"/")
}

// localFS reports why a tree's file system cannot be trusted to raise every
// change as an inotify event (remote and FUSE file systems change without
// this kernel knowing), or nil.
func localFS(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return err
	}
	switch uint32(st.Type) {
	case 0xEF53, // ext2/3/4
		0x58465342, // xfs
		0x9123683E, // btrfs
		0x01021994, // tmpfs
		0x858458F6, // ramfs
		0x794C7630, // overlayfs
		0x2FC12FC1, // zfs
		0xF2F52010: // f2fs
		return nil
	}
	return fmt.Errorf("file system type %#x is not known to report every change", uint32(st.Type))
}
