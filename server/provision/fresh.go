package provision

import (
	"sync/atomic"
	"time"

	"github.com/wwcluster/ww/server/config"
)

// freshSnapshot asks Config.Fresh (which stats wwserver.toml and nodes.toml)
// at most once per interval on the node routes, and hands out the snapshot
// it got in between: two stat calls were 15% of an iPXE script's CPU. The
// file watch still reloads at once; this only bounds how late a change the
// watch missed is seen. Operator routes (/healthz, /status) ask Config
// directly.
type freshSnapshot struct {
	cfg   Config
	every time.Duration
	next  atomic.Int64 // unix nanoseconds after which Fresh is asked again
	snap  atomic.Pointer[config.Snapshot]
}

func newFreshSnapshot(cfg Config, every time.Duration) *freshSnapshot {
	return &freshSnapshot{cfg: cfg, every: every}
}

// get returns the current snapshot, at most every old.
func (f *freshSnapshot) get() *config.Snapshot {
	if f.every <= 0 {
		return f.cfg.Fresh()
	}
	now := time.Now().UnixNano()
	next := f.next.Load()
	if s := f.snap.Load(); s != nil && (now < next || !f.next.CompareAndSwap(next, now+int64(f.every))) {
		// Within the interval, or another request is asking right now.
		return s
	}
	s := f.cfg.Fresh()
	f.snap.Store(s)
	f.next.Store(time.Now().UnixNano() + int64(f.every))
	return s
}

// offer hands out s from now on when it is newer than the snapshot held
// (discovery reloads the config and the node's next request, possibly
// within the interval, must see its MAC).
func (f *freshSnapshot) offer(s *config.Snapshot) {
	for {
		cur := f.snap.Load()
		if cur != nil && cur.Gen >= s.Gen {
			return
		}
		if f.snap.CompareAndSwap(cur, s) {
			return
		}
	}
}
