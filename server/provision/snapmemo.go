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
	until int64 // unix nanoseconds; entries are replaced, never changed
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
	v, ok := g.m.Load(key)
	if ok && now < v.(*memoEntry[V]).until {
		return v.(*memoEntry[V]).v, nil
	}
	// Missing or expired: every request asks until one remembers an
	// answer. None gets the old one meanwhile: while an edited image is
	// rebuilt (seconds), its nodes must wait for the new digest, not boot
	// the old image (find shares the build among them).
	found, err := find()
	if err != nil {
		if ok {
			g.m.CompareAndDelete(key, v) // the next request asks again
		}
		return found, err
	}
	g.m.Store(key, &memoEntry[V]{v: found, until: now + int64(a.every)})
	return found, nil
}
