package provision

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/config"
)

// countingConfig counts Fresh calls.
type countingConfig struct {
	*fakeConfig
	calls atomic.Int64
}

func (c *countingConfig) Fresh() *config.Snapshot {
	c.calls.Add(1)
	return c.fakeConfig.Fresh()
}

func TestFreshSnapshotBatches(t *testing.T) {
	cfg := &countingConfig{fakeConfig: newFakeConfig(t, true, "")}
	first := cfg.snap.Load()

	every := newFreshSnapshot(cfg, 0)
	for range 100 {
		every.get()
	}
	if n := cfg.calls.Load(); n != 100 {
		t.Errorf("FreshEvery 0: %d Fresh calls for 100 requests, want 100", n)
	}

	cfg.calls.Store(0)
	batched := newFreshSnapshot(cfg, time.Hour)
	for range 100 {
		if s := batched.get(); s != first {
			t.Fatal("wrong snapshot")
		}
	}
	if n := cfg.calls.Load(); n != 1 {
		t.Errorf("FreshEvery 1h: %d Fresh calls for 100 requests, want 1", n)
	}

	// After the interval the next request sees a new snapshot.
	second := &config.Snapshot{Server: first.Server, Nodes: first.Nodes}
	cfg.snap.Store(second)
	if s := batched.get(); s != first {
		t.Error("a new snapshot was seen within the interval")
	}
	batched.next.Store(0) // the interval is over
	if s := batched.get(); s != second {
		t.Error("a new snapshot was not seen after the interval")
	}
}
