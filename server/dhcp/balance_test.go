package dhcp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fixedPeers is a PoolPeers with a set answer.
type fixedPeers struct{ self, n int }

func (f fixedPeers) PoolPeers() (int, int) { return f.self, f.n }

func newTestBalancer(t *testing.T, self, n int) *balancer {
	t.Helper()
	b, err := newBalancer(fixedPeers{self, n}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every MAC is answered by exactly one of two servers, and each gets a
// fair part of them.
func TestBalancerSplitsClients(t *testing.T) {
	a, b := newTestBalancer(t, 0, 2), newTestBalancer(t, 1, 2)
	now := time.Now()
	na := 0
	const macs = 2000
	for i := 0; i < macs; i++ {
		mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16, (i>>8)&0xff, i&0xff)
		ia, ib := a.answers(mac, 0, now), b.answers(mac, 0, now)
		if ia == ib {
			t.Fatalf("%s: answered by server 0: %v, by server 1: %v; want exactly one", mac, ia, ib)
		}
		if ia {
			na++
		}
	}
	if na < macs*40/100 || na > macs*60/100 {
		t.Errorf("server 0 answers %d of %d MACs, want 40-60 %%", na, macs)
	}
	alone := newTestBalancer(t, 0, 1)
	var none *balancer
	if !alone.answers("52:54:00:00:00:01", 0, now) || !none.answers("52:54:00:00:00:01", 0, now) {
		t.Error("a server alone (or without a balancer) must answer every DISCOVER")
	}
}

// A server answers a client of another server's bucket once the client
// has tried for takeoverAfter: by its secs field, or by repeated DISCOVERs.
func TestBalancerTakeover(t *testing.T) {
	b := newTestBalancer(t, 0, 2)
	var others []string // MACs of server 1's buckets
	for i := 0; len(others) < 2; i++ {
		if m := fmt.Sprintf("52:54:00:00:00:%02x", i); bucket(m)%2 == 1 {
			others = append(others, m)
		}
	}
	mac := others[0]
	t0 := time.Now()
	if b.answers(mac, 0, t0) || b.answers(mac, 1, t0.Add(time.Second)) {
		t.Fatal("answered another server's client before it had tried for 2 s")
	}
	if !b.answers(mac, 0, t0.Add(takeoverAfter)) {
		t.Fatal("not answered 2 s after its first DISCOVER")
	}
	if !b.answers(others[1], 2, t0) {
		t.Fatal("secs = 2 not taken over at once")
	}
	// A minute later the MAC starts afresh (a new boot): the owner first.
	if b.answers(mac, 0, t0.Add(forgetSkipped+takeoverAfter)) {
		t.Fatal("a DISCOVER a minute later was taken over at once")
	}
	if got := testutil.ToFloat64(b.takeovers); got < 1 {
		t.Errorf("takeovers counted: %v", got)
	}
	// The memory is bounded.
	for i := 0; i < maxSkipped+100; i++ {
		b.answers(fmt.Sprintf("02:00:%08x", i), 0, t0)
	}
	if len(b.skipped) > maxSkipped {
		t.Errorf("%d MACs remembered, bound %d", len(b.skipped), maxSkipped)
	}
}

// memShared is an in-memory SharedLeases with a compare-and-swap Claim (a
// unit seam for the etcd writer) that also says who shares the pool.
type memShared struct {
	mu     *sync.Mutex
	byIP   map[netip.Addr]Lease
	races  *int
	peers  fixedPeers
	claims *int
}

func (m memShared) PoolPeers() (int, int) { return m.peers.self, m.peers.n }

func (m memShared) Claim(_ context.Context, l Lease) (Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	*m.claims++
	if cur, ok := m.byIP[l.IP]; ok && cur.MAC != l.MAC && l.Expires.After(time.Now()) {
		*m.races++
		return Lease{}, ErrSharedInUse
	}
	m.byIP[l.IP] = l
	return l, nil
}
func (m memShared) Release(context.Context, netip.Addr, string) error { return nil }
func (m memShared) Leases(context.Context) ([]Lease, error)           { return nil, nil }

// Two servers allocating from one pool take addresses from their own
// interleaved shares, so they do not race for the same next free address;
// once a share is used up a server takes the other's free addresses.
func TestSharedStoresAllocateFromOwnShare(t *testing.T) {
	var mu sync.Mutex
	db, races, claims := map[netip.Addr]Lease{}, 0, 0
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	stores := []*sharedStore{
		newSharedStore(memShared{&mu, db, &races, fixedPeers{0, 2}, &claims}, log),
		newSharedStore(memShared{&mu, db, &races, fixedPeers{1, 2}, &claims}, log),
	}
	start := netip.MustParseAddr("10.0.0.10")
	p := &pool{start: u32(start), end: u32(start) + 9, skip: func(netip.Addr) bool { return false }}
	now := time.Now()
	for i := 0; i < 8; i++ { // 4 each: their whole shares but one address
		s := stores[i%2]
		l, _, err := s.allocate(p, fmt.Sprintf("52:54:00:00:00:%02x", i), "", netip.Addr{}, StateOffered, now.Add(time.Minute), now)
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if off := u32(l.IP) - p.start; int(off%2) != i%2 {
			t.Errorf("server %d gave %s (offset %d), outside its share", i%2, l.IP, off)
		}
	}
	if races != 0 {
		t.Errorf("%d lost compare-and-swaps between the servers, want 0", races)
	}
	// Server 0 takes its last own address, then one of server 1's.
	seen := map[netip.Addr]bool{}
	for i := 8; i < 10; i++ {
		l, _, err := stores[0].allocate(p, fmt.Sprintf("52:54:00:00:00:%02x", i), "", netip.Addr{}, StateOffered, now.Add(time.Minute), now)
		if err != nil {
			t.Fatalf("allocation %d past the share: %v", i, err)
		}
		seen[l.IP] = true
	}
	if len(seen) != 2 {
		t.Errorf("the last two addresses: %v", seen)
	}
	if _, _, err := stores[1].allocate(p, "52:54:00:00:00:ff", "", netip.Addr{}, StateOffered, now.Add(time.Minute), now); err == nil {
		t.Error("an 11th client got an address from a 10-address pool")
	}
}
