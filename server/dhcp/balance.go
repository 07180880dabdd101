package dhcp

import (
	"hash/fnv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Load balancing of pool DISCOVERs between servers that share a pool
// (RFC 3074's scheme, as Kea's HA load-balancing mode does it): a client's
// MAC hashes to one of 256 buckets and the buckets are dealt out over the
// live servers, so in the normal case one server answers each DISCOVER.
// Before, every server answered every DISCOVER, so each cost one lost
// compare-and-swap race and a read on the slower server (at 2,000
// DISCOVERs/s about half the lease writer's work). The compare-and-swap
// stays the safety net: two servers that disagree on who owns a bucket
// (while the server list changes) race as before, never hand an address
// out twice. The hash is FNV-1a, not RFC 3074's Pearson table: both ends
// are wwservers, nothing else has to agree with it.

// PoolPeers is implemented by a SharedLeases whose servers split the pool's
// DISCOVERs: this server's index among the n live servers that serve the
// same pool, in the same order on every server. n ≤ 1 (alone, or the list
// is not known): answer everything.
type PoolPeers interface {
	PoolPeers() (self, n int)
}

// Takeover: a server answers a DISCOVER it does not own when the client
// has been trying for takeoverAfter (its secs field, or the first DISCOVER
// this server left to the owner), so a dead owner costs a client one
// retransmission, not the 10 s until its registration in etcd runs out.
const (
	takeoverAfter = 2 * time.Second
	// forgetSkipped: a MAC seen this long ago starts afresh (it was
	// answered, or is a new boot).
	forgetSkipped = time.Minute
	// maxSkipped bounds the MACs remembered.
	maxSkipped = 1 << 16
)

// balancer decides which DISCOVERs this server answers.
type balancer struct {
	peers     PoolPeers
	takeovers prometheus.Counter

	mu      sync.Mutex
	skipped map[string]time.Time // MAC → first DISCOVER left to its owner
}

func newBalancer(peers PoolPeers, reg prometheus.Registerer) (*balancer, error) {
	b := &balancer{peers: peers, skipped: map[string]time.Time{},
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwserver_dhcp_balance_takeovers_total",
			Help: "Pool DISCOVERs answered for another server that owns the client's hash bucket, because the client kept asking (secs or repeated DISCOVERs over 2 s).",
		}),
	}
	servers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wwserver_dhcp_balance_servers",
		Help: "Live servers sharing this pool's DISCOVERs by hash bucket (1: this server answers all).",
	}, func() float64 { _, n := peers.PoolPeers(); return float64(max(n, 1)) })
	for _, c := range []prometheus.Collector{b.takeovers, servers} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// bucket is the client's hash bucket (0..255).
func bucket(mac string) int {
	h := fnv.New32a()
	h.Write([]byte(mac))
	return int(h.Sum32() % 256)
}

// answers reports whether this server answers a pool DISCOVER from mac
// whose secs field is secs. A nil balancer answers everything.
func (b *balancer) answers(mac string, secs uint16, now time.Time) bool {
	if b == nil {
		return true
	}
	self, n := b.peers.PoolPeers()
	if n <= 1 || bucket(mac)%n == self {
		return true
	}
	if time.Duration(secs)*time.Second >= takeoverAfter {
		b.takeovers.Inc()
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	first, ok := b.skipped[mac]
	switch {
	case ok && now.Sub(first) >= forgetSkipped, !ok:
		if len(b.skipped) >= maxSkipped {
			b.sweep(now)
		}
		b.skipped[mac] = now
		return false
	case now.Sub(first) >= takeoverAfter:
		b.takeovers.Inc()
		return true
	}
	return false
}

// sweep forgets old MACs, or all of them when none is old (at worst a
// takeover comes one retransmission later); b.mu is held.
func (b *balancer) sweep(now time.Time) {
	for m, t := range b.skipped {
		if now.Sub(t) >= forgetSkipped {
			delete(b.skipped, m)
		}
	}
	if len(b.skipped) >= maxSkipped {
		b.skipped = map[string]time.Time{}
	}
}
