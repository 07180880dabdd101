package provision

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/wwcluster/ww/server/config"
)

// archMemo remembers each image's architecture for at most FreshEvery, as
// freshSnapshot does the config: finding a node's kernel walks the image's
// boot/ directory (open, readdir, stat), which was ~40% of an iPXE script's
// CPU when done per request. So a kernel swapped for another architecture's
// is seen in the scripts within FreshEvery; the kernel route itself still
// looks every time. Keyed per snapshot (the image and kernel a node names
// come from it), so the map is bounded by the config.
type archMemo struct {
	every time.Duration
	cur   atomic.Pointer[archGen]
}

type archGen struct {
	snap *config.Snapshot
	m    sync.Map // archKey → *archEntry
}

type archKey struct{ image, kernel string }

type archEntry struct {
	arch  string
	until atomic.Int64 // unix nanoseconds
}

// get returns n's image architecture, asking find when the remembered one
// is older than every (always when every is zero).
func (a *archMemo) get(snap *config.Snapshot, n *config.Node, find func() string) string {
	if a.every <= 0 {
		return find()
	}
	g := a.cur.Load()
	if g == nil || g.snap != snap {
		ng := &archGen{snap: snap}
		if a.cur.CompareAndSwap(g, ng) {
			g = ng
		} else if g = a.cur.Load(); g.snap != snap {
			return find() // snapshots changing under us: do not cache
		}
	}
	key := archKey{n.Image, n.Kernel}
	now := time.Now().UnixNano()
	v, ok := g.m.Load(key)
	if ok {
		e := v.(*archEntry)
		if now < e.until.Load() {
			return e.arch
		}
		// Expired: the request that moves until on looks again, the
		// others use the old answer meanwhile (one walk, not one each).
		if old := e.until.Load(); now >= old && e.until.CompareAndSwap(old, now+int64(a.every)) {
			e = newArchEntry(find(), now+int64(a.every))
			g.m.Store(key, e)
		}
		return e.arch
	}
	e := newArchEntry(find(), now+int64(a.every))
	g.m.Store(key, e)
	return e.arch
}

func newArchEntry(arch string, until int64) *archEntry {
	e := &archEntry{arch: arch}
	e.until.Store(until)
	return e
}
