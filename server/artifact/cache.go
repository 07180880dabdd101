package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// kind is a kind of cache file.
type kind struct {
	name string // metrics label
	dir  string // below the state directory
	// durable files are fsynced before they are renamed into place, so after
	// a crash a file under its final name is complete and a new process may
	// use it. Per-node files are cheap to make: a new process rebuilds them
	// rather than trusting them, and they skip the fsync.
	durable bool
	// parallel: compressed on every core (see writeGzip).
	parallel bool
}

var (
	kindImage    = kind{"image", "images", true, true}
	kindFiles    = kind{"overlay_files", filepath.Join("overlays", "shared"), true, false}
	kindRendered = kind{"overlay_rendered", filepath.Join("overlays", "rendered"), true, false}
	kindNode     = kind{"overlay_node", filepath.Join("overlays", "node"), false, false}
	kindModules  = kind{"modules", "modules", true, false} // two-stage: network drivers (modules.go)
	kinds        = []kind{kindImage, kindFiles, kindRendered, kindNode, kindModules}
	// oldCacheDirs held cache files of earlier layouts; Prune empties them.
	oldCacheDirs = []string{filepath.Join("overlays", "runtime")}
)

// maxBuildTries bounds the builds of one key when sources keep changing.
const maxBuildTries = 5

// part is one immutable cache file.
type part struct {
	key  string
	path string
	size int64
	mod  time.Time
	used atomic.Int64 // unix ns of the last lookup
}

type partResult struct {
	p     *part
	built bool
}

// lookup returns the part for key if this process has it.
func (b *Builder) lookup(key string) *part {
	b.mu.Lock()
	p := b.parts[key]
	if p != nil {
		p.used.Store(time.Now().UnixNano())
	}
	b.mu.Unlock()
	return p
}

// forget drops keys from memory (their files went missing), so the next call
// rebuilds them.
func (b *Builder) forget(keys ...string) {
	b.mu.Lock()
	for _, k := range keys {
		delete(b.parts, k)
	}
	b.mu.Unlock()
}

// get returns the cache part for key, building it with fill (which writes
// the uncompressed content; it becomes one gzip member) when it is neither
// in memory nor, for durable kinds, on disk. One build per key runs at a
// time; concurrent callers share it.
func (b *Builder) get(ctx context.Context, k kind, key string, fill func(io.Writer) error) (*part, error) {
	if p := b.lookup(key); p != nil {
		b.m.hits.WithLabelValues(k.name).Inc()
		b.reused.Add(1)
		return p, nil
	}
	r, err := b.builds.Do(ctx, key, func() (partResult, error) {
		if p := b.lookup(key); p != nil { // finished just before we came
			return partResult{p: p}, nil
		}
		path := filepath.Join(b.state, k.dir, key+cacheSuffix)
		if k.durable {
			// Adopt a file an earlier process built. Prune must not remove
			// it between the stat and the store.
			b.pruneMu.RLock()
			fi, err := os.Stat(path)
			if err == nil && fi.Mode().IsRegular() {
				p := b.store(key, path, fi)
				b.pruneMu.RUnlock()
				return partResult{p: p}, nil
			}
			b.pruneMu.RUnlock()
		}
		b.slots <- struct{}{} // wait for a build slot
		defer func() { <-b.slots }()
		if b.beforeBuild != nil {
			b.beforeBuild(k)
		}
		start := time.Now()
		fi, err := b.write(k, path, fill)
		// A file written while we read it: try again (it reads the new
		// state, which is at least as fresh as the caller needs).
		for try := 1; errors.Is(err, errChanged) && try < maxBuildTries; try++ {
			b.log.Debug("source changed during build; again", "kind", k.name, "err", err)
			time.Sleep(time.Duration(try) * 10 * time.Millisecond)
			fi, err = b.write(k, path, fill)
		}
		if err != nil {
			return partResult{}, err
		}
		d := time.Since(start)
		b.m.builds.WithLabelValues(k.name).Inc()
		b.m.seconds.WithLabelValues(k.name).Observe(d.Seconds())
		b.built.Add(1)
		lvl := slog.LevelDebug
		if k.durable {
			lvl = slog.LevelInfo
		}
		b.log.Log(context.Background(), lvl, "built", "kind", k.name, "key", key[:16], "bytes", fi.Size(), "took", d.Round(time.Millisecond))
		return partResult{p: b.store(key, path, fi), built: true}, nil
	})
	if err != nil {
		return nil, err
	}
	if r.built {
		b.m.misses.WithLabelValues(k.name).Inc()
	} else {
		b.m.hits.WithLabelValues(k.name).Inc()
		b.reused.Add(1)
	}
	return r.p, nil
}

func (b *Builder) store(key, path string, fi fs.FileInfo) *part {
	p := &part{key: key, path: path, size: fi.Size(), mod: fi.ModTime()}
	p.used.Store(time.Now().UnixNano())
	b.mu.Lock()
	b.parts[key] = p
	b.mu.Unlock()
	return p
}

// write builds a cache file atomically: a temporary file in the same
// directory, renamed into place when complete.
func (b *Builder) write(k kind, path string, fill func(io.Writer) error) (fs.FileInfo, error) {
	f, err := os.CreateTemp(filepath.Dir(path), tmpPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return nil, fmt.Errorf("create cache file: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	cw := &countWriter{w: f}
	err = writeGzip(cw, k.parallel, fill)
	b.written.Add(cw.n)
	b.m.bytes.Add(float64(cw.n))
	if err != nil {
		return nil, err
	}
	if k.durable {
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("write cache file: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write cache file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("write cache file: %w", err)
	}
	ok = true
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("write cache file: %w", err)
	}
	return fi, nil
}

// artifact assembles an Artifact from cache parts.
func (b *Builder) artifact(name string, parts ...*part) *Artifact {
	a := &Artifact{Name: name}
	keys := make([]string, len(parts))
	for i, p := range parts {
		keys[i] = p.key
		a.Parts = append(a.Parts, p.path)
		a.sizes = append(a.sizes, p.size)
		a.Size += p.size
		if p.mod.After(a.ModTime) {
			a.ModTime = p.mod
		}
	}
	a.ETag = etag(keys...)
	a.forget = func() { b.forget(keys...) }
	return a
}

// DefaultPruneAge is a sensible age for Prune.
const DefaultPruneAge = 30 * time.Minute

// Prune removes cache files no longer in use: it forgets parts not looked up
// for maxAge, then removes every cache file that is not remembered and is
// older than maxAge (stale temporary files included). Files of the current
// generation are looked up on every request, so they stay; a file being
// served when it is removed stays readable through the open descriptor.
// It returns the number of files removed.
func (b *Builder) Prune(maxAge time.Duration) (int, error) {
	if maxAge < time.Minute {
		maxAge = time.Minute
	}
	cutoff := time.Now().Add(-maxAge)
	b.mu.Lock()
	for key, p := range b.parts {
		if time.Unix(0, p.used.Load()).Before(cutoff) {
			delete(b.parts, key)
		}
	}
	b.mu.Unlock()
	// live reports whether a part uses the file (looked up when removing
	// it: a file may be adopted meanwhile).
	live := func(path string) bool {
		key := strings.TrimSuffix(filepath.Base(path), cacheSuffix)
		b.mu.Lock()
		defer b.mu.Unlock()
		p := b.parts[key]
		return p != nil && p.path == path
	}
	removed := 0
	var errs []error
	dirs := append([]string{}, oldCacheDirs...)
	for _, k := range kinds {
		dirs = append(dirs, k.dir)
	}
	for _, d := range dirs {
		dir := filepath.Join(b.state, d)
		ents, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, de := range ents {
			name := de.Name()
			path := filepath.Join(dir, name)
			if !de.Type().IsRegular() ||
				!(strings.HasSuffix(name, cacheSuffix) || strings.HasPrefix(name, tmpPrefix)) {
				continue
			}
			fi, err := de.Info()
			if err != nil || fi.ModTime().After(cutoff) {
				continue
			}
			// Adoption (stat, then store) must not interleave with the
			// check and the removal; held per file, never across the scan.
			b.pruneMu.Lock()
			if !live(path) {
				err = os.Remove(path)
				if err == nil {
					removed++
				}
			}
			b.pruneMu.Unlock()
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	n, err := b.pruneChunks(cutoff) // chunked.go
	removed += n
	if err != nil {
		errs = append(errs, err)
	}
	b.m.pruned.Add(float64(removed))
	if removed > 0 {
		b.log.Info("pruned build cache", "removed", removed)
	}
	return removed, errors.Join(errs...)
}

// fingerprints memoises tree fingerprints for one request (or one BuildAll
// run): every tree's fingerprint comes from a check that started after the
// request arrived: a lookup after the request's watch barrier (see
// treeWatcher; one barrier serves every tree of the request), or a walk.
type fingerprints struct {
	b       *Builder
	mu      sync.Mutex
	m       map[string]*fpOnce
	barrier sync.Once
	epoch   uint64
	synced  bool
}

type fpOnce struct {
	once sync.Once
	fp   fingerprint
	err  error
}

func (b *Builder) newFingerprints() *fingerprints {
	return &fingerprints{b: b, m: map[string]*fpOnce{}}
}

// get returns the fingerprint of the tree at dir.
func (f *fingerprints) get(ctx context.Context, dir string, kind treeKind) (fingerprint, error) {
	f.mu.Lock()
	o := f.m[dir]
	if o == nil {
		o = &fpOnce{}
		f.m[dir] = o
	}
	f.mu.Unlock()
	o.once.Do(func() {
		f.barrier.Do(func() { f.epoch, f.synced = f.b.watch.sync() })
		if f.synced {
			var ok bool
			if o.fp, ok = f.b.watch.lookup(dir, f.epoch); ok {
				return
			}
		}
		label := "overlay"
		if kind == treeImage {
			label = "image"
		}
		o.fp, o.err = f.b.walks.Do(ctx, dir, func() (fingerprint, error) {
			// Queued behind a walk that has just made the tree watched
			// (requests piling up on a cold server): a barrier suffices.
			if epoch, ok := f.b.watch.sync(); ok {
				if fp, ok := f.b.watch.lookup(dir, epoch); ok {
					return fp, nil
				}
			}
			tok := f.b.watch.prepare(dir)
			var hook func(string)
			if tok.establish != nil {
				hook = tok.watchDir
			}
			start := time.Now()
			fp, err := fingerprintTree(dir, kind, &f.b.hashes, hook)
			f.b.m.walks.WithLabelValues(label).Inc()
			f.b.m.walkSecs.WithLabelValues(label).Observe(time.Since(start).Seconds())
			f.b.watch.end(tok, fp, err)
			return fp, err
		})
	})
	return o.fp, o.err
}
