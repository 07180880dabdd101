package cluster

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/etcdstate"
	"github.com/wwcluster/ww/server/etcdstate/etcdtest"
)

// TestCleanStopWithdrawsAtOnce: a server that stops cleanly (a restart, an
// upgrade) must vanish from the others' list of live servers at their next
// read, not when its etcd lease runs out: until then they leave its share
// of DISCOVERs to it and its clients wait for a takeover.
func TestCleanStopWithdrawsAtOnce(t *testing.T) {
	p := etcdtest.StartProcess(t)
	member := func(id string) *Member {
		c, err := etcdstate.Connect(etcdstate.Options{Endpoints: []string{p.Endpoint}, Prefix: "/wd/", Timeout: 2 * time.Second, ServerID: id})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return &Member{c: c, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	}
	run := func(m *Member, addr string) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			m.loop(ctx, func() etcdstate.ServerInfo { return etcdstate.ServerInfo{Address: addr} })
		}()
		stop = func() { cancel(); <-done }
		t.Cleanup(stop)
		return stop
	}
	a, b := member("a"), member("b")
	stopA := run(a, "127.0.0.1:1")
	run(b, "127.0.0.1:2")
	seen := func(m *Member) int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.servers)
	}
	pollUntil(t, "both servers registered", 15*time.Second, func() bool { return seen(a) == 2 && seen(b) == 2 })

	stopA()
	// b reads the list every serversEvery (2 s); without the withdrawal
	// the lease keeps a listed for ≥ 2/3 of its TTL after the last renewal.
	limit := etcdstate.ServerTTL / 2
	gone := pollUntil(t, "a gone from b's list", 30*time.Second, func() bool { return seen(b) == 1 })
	t.Logf("a gone from b's list %s after its clean stop", gone.Round(time.Millisecond))
	if gone > limit {
		t.Errorf("a left b's list %s after a clean stop, want within %s (before its lease runs out)", gone.Round(time.Millisecond), limit)
	}
}
