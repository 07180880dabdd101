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

// pollUntil checks cond every 50 ms (as a monitor polls /healthz) and
// returns how long it took to hold; it fails the test after limit.
func pollUntil(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not after %s", what, limit)
		}
		<-tick.C
	}
	return time.Since(start)
}

// TestSharedHealthRecoversPromptly (issue 20, Low 13): /healthz stayed
// degraded up to 25 s after etcd came back (the next publish was up to
// publishEvery away, and the etcd client's reconnect backoff had grown
// while etcd was down). It must recover within a few seconds.
func TestSharedHealthRecoversPromptly(t *testing.T) {
	p := etcdtest.StartProcess(t)
	c, err := etcdstate.Connect(etcdstate.Options{Endpoints: []string{p.Endpoint}, Prefix: "/hz/", Timeout: 2 * time.Second, ServerID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &Member{c: c, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.loop(ctx, func() etcdstate.ServerInfo { return etcdstate.ServerInfo{Address: "127.0.0.1:9873"} })
	}()
	t.Cleanup(func() { cancel(); <-done })
	healthy := func() bool { ok, _ := s.Health(); return ok }

	// Healthy once the first publish went through (before it there is no
	// error either).
	pollUntil(t, "published", 15*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.servers) == 1 && s.err == nil
	})
	p.Kill()
	down := pollUntil(t, "degraded after etcd was killed", 30*time.Second, func() bool { return !healthy() })
	// Stay down a while, so that a reconnect backoff can grow.
	downSince := time.Now()
	pollUntil(t, "etcd down for 8 s", 10*time.Second, func() bool { return time.Since(downSince) > 8*time.Second && !healthy() })
	p.Restart() // returns once etcd answers
	up := pollUntil(t, "healthy after etcd was back", 60*time.Second, healthy)
	t.Logf("degraded %s after etcd was killed; healthy %s after it was back", down.Round(time.Millisecond), up.Round(time.Millisecond))
	if up > 4*time.Second {
		t.Errorf("healthy only %s after etcd was back, want within 4 s", up.Round(time.Millisecond))
	}
	if ok, reason := s.Health(); !ok || reason != "" {
		t.Errorf("health %v %q", ok, reason)
	}
}
