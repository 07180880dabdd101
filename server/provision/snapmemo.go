package provision

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/wwcluster/ww/server/config"
)

// snapMemo remembers per-snapshot answers that are costly to find, each for
// at most every, as freshSnapshot does the config. Two use it:
//   - an image's architecture: finding a node's kernel walks the image's
//     boot/ directory (open, readdir, stat), which was ~40% of an iPXE
//     script's CPU when done per request;
//   - a two-stage image's digest: proving the image tree unchanged (a stat
//     and an inotify barrier) and hashing the build key was ~16% of a
//     two-stage node's script CPU, the default boot's.
//
// So a kernel swapped for another architecture's, or an edited image, is
// seen in the scripts within every (the routes that serve the files still
// look every time). Keyed per snapshot (the image and kernel a node names
// come from it), so the map is bounded by the config. Errors are not
// remembered.
type snapMemo[K comparable, V any] struct {
	every time.Duration
	cur   atomic.Pointer[memoGen[K, V]]
}

type memoGen[K comparable, V any] struct {
	snap *config.Snapshot
	m    sync.Map // K → *memoEntry[V]
}

type memoEntry[V any] struct {
	v     V
	until atomic.Int64 // unix nanoseconds
}

// get returns key's value for snap, asking find when the remembered one is
// older than every (always when every is zero).
func (a *snapMemo[K, V]) get(snap *config.Snapshot, key K, find func() (V, error)) (V, error) {
	if a.every <= 0 {
		return find()
	}
	g := a.cur.Load()
	if g == nil || g.snap != snap {
		ng := &memoGen[K, V]{snap: snap}
		if a.cur.CompareAndSwap(g, ng) {
			g = ng
		} else if g = a.cur.Load(); g.snap != snap {
			return find() // snapshots changing under us: do not cache
		}
	}
	now := time.Now().UnixNano()
	if v, ok := g.m.Load(key); ok {
		e := v.(*memoEntry[V])
		old := e.until.Load()
		// Expired: the request that moves until on looks again, the others
		// use the old answer meanwhile (one lookup, not one each).
		if now < old || !e.until.CompareAndSwap(old, now+int64(a.every)) {
			return e.v, nil
		}
		return a.find(g, key, e, now, find)
	}
	return a.find(g, key, nil, now, find)
}

// find asks find and remembers its answer in place of old (nil: none); a
// failed lookup forgets old, so that the next request asks again.
func (a *snapMemo[K, V]) find(g *memoGen[K, V], key K, old *memoEntry[V], now int64, find func() (V, error)) (V, error) {
	v, err := find()
	if err != nil {
		if old != nil {
			g.m.CompareAndDelete(key, old)
		}
		return v, err
	}
	e := &memoEntry[V]{v: v}
	e.until.Store(now + int64(a.every))
	g.m.Store(key, e)
	return v, nil
}
