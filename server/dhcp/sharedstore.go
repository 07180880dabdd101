package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// SharedLeases is a lease database that several wwservers share (etcd,
// server/etcdstate, adapted in wwserver's serve command). Claim is a
// compare-and-swap: it takes l.IP for l.MAC, or renews and returns the
// address l.MAC already holds, and fails with ErrSharedInUse when another
// MAC holds the address. A claim by the address's own MAC never turns a
// bound lease back into an offer nor shortens it: it returns the lease as
// held (a late OFFER from another server must not undo a binding). Any
// other error means "could not ask": the server then hands out no pool
// address rather than risk giving one twice.
type SharedLeases interface {
	Claim(ctx context.Context, l Lease) (Lease, error)
	Release(ctx context.Context, ip netip.Addr, mac string) error
	Leases(ctx context.Context) ([]Lease, error)
}

// ErrSharedInUse is what a SharedLeases returns when another client holds
// the address.
var ErrSharedInUse = errors.New("address held by another client")

// ErrSharedBusy is what a SharedLeases returns when it did not try the
// change because too much was waiting (its queue was full): the request is
// dropped, but the database is not taken for down.
var ErrSharedBusy = errors.New("shared lease database busy")

// errSharedUnavailable: the shared database did not answer (or did not
// recently): no pool address is handed out.
var errSharedUnavailable = errors.New("shared lease database unavailable")

// sharedRetry is how long after a failed call the store refuses pool
// leases at once instead of asking again: DHCP workers must not all sit in
// etcd time-outs while reservations wait behind them.
const sharedRetry = 5 * time.Second

// sharedRefresh is how often the local cache is refreshed from the shared
// database (leases other servers gave out).
const sharedRefresh = 30 * time.Second

// maxSharedAttempts bounds the addresses tried per allocation.
const maxSharedAttempts = 32

// sharedStore is the leaseStore of a server that shares its pool: every
// pool change goes through the shared database first (its commit is the
// durable point, so replies wait for nothing more), and a local leaseTable
// caches what this server knows. Reservations from nodes.toml need no
// coordination and stay local.
type sharedStore struct {
	*leaseTable
	shared SharedLeases
	log    *slog.Logger

	mu       sync.Mutex
	downErr  error     // last "could not ask" error; nil when the last call worked
	downAt   time.Time // when downErr happened
	probing  bool      // one call is testing whether the database is back
	refusals int64
}

func newSharedStore(shared SharedLeases, log *slog.Logger) *sharedStore {
	return &sharedStore{leaseTable: newLeaseTable(), shared: shared, log: log}
}

// call runs f against the shared database unless it failed less than
// sharedRetry ago (then one caller probes and the others are refused).
func (s *sharedStore) call(f func(ctx context.Context) error) error {
	s.mu.Lock()
	if s.downErr != nil && time.Since(s.downAt) < sharedRetry {
		s.refusals++
		s.mu.Unlock()
		return errSharedUnavailable
	}
	if s.downErr != nil {
		if s.probing {
			s.refusals++
			s.mu.Unlock()
			return errSharedUnavailable
		}
		s.probing = true
	}
	s.mu.Unlock()
	err := f(context.Background())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.probing = false
	switch {
	case errors.Is(err, ErrSharedBusy):
		return err
	case err == nil || errors.Is(err, ErrSharedInUse):
		if s.downErr != nil {
			s.log.Info("dhcp: shared lease database reachable again; pool leases resume")
		}
		s.downErr = nil
		return err
	default:
		if s.downErr == nil {
			s.log.Error("dhcp: shared lease database unreachable; pool leases refused until it answers (reservations still served)", "err", err)
		}
		s.downErr, s.downAt = err, time.Now()
		return fmt.Errorf("%w: %v", errSharedUnavailable, err)
	}
}

// put records l in the local cache whatever it held before (the shared
// database has the last word).
func (t *leaseTable) put(l Lease) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, ok := t.byIP[l.IP]; ok && t.byMAC[cur.MAC] == cur {
		delete(t.byMAC, cur.MAC)
	}
	if old, ok := t.byMAC[l.MAC]; ok && t.byIP[old.IP] == old {
		delete(t.byIP, old.IP)
	}
	c := l
	t.byIP[l.IP] = &c
	if l.MAC != "" && l.State != StateDeclined {
		t.byMAC[l.MAC] = &c
	}
}

func (s *sharedStore) claimShared(l Lease) (Lease, error) {
	var got Lease
	err := s.call(func(ctx context.Context) error {
		var err error
		got, err = s.shared.Claim(ctx, l)
		return err
	})
	if err != nil {
		return Lease{}, err
	}
	s.put(got)
	return got, nil
}

// claim takes a pool address the client asked for (REQUEST).
func (s *sharedStore) claim(ip netip.Addr, mac, node, state string, expires, now time.Time) (Lease, durable, error) {
	got, err := s.claimShared(Lease{IP: ip, MAC: mac, Node: node, State: state, Expires: expires})
	if errors.Is(err, ErrSharedInUse) {
		return Lease{}, nil, errInUse
	}
	if err != nil {
		return Lease{}, nil, err
	}
	if got.IP != ip { // the MAC holds another address: that one is its lease
		return Lease{}, nil, errInUse
	}
	return got, nil, nil
}

// allocate tries the MAC's cached address, then want, then the addresses
// the cache thinks free after the cursor; the shared database decides.
func (s *sharedStore) allocate(p *pool, mac, node string, want netip.Addr, state string, expires, now time.Time) (Lease, durable, error) {
	tried := map[netip.Addr]bool{}
	for attempt := 0; attempt < maxSharedAttempts; attempt++ {
		ip, ok := s.candidate(p, mac, want, now, tried)
		if !ok {
			break
		}
		tried[ip] = true
		got, err := s.claimShared(Lease{IP: ip, MAC: mac, Node: node, State: state, Expires: expires})
		switch {
		case err == nil && p.contains(got.IP):
			return got, nil, nil
		case err == nil: // the MAC holds an address outside this pool
			return Lease{}, nil, errInUse
		case errors.Is(err, ErrSharedInUse):
			// Another server gave it out: remember for a minute, try the next.
			s.put(Lease{IP: ip, State: StateOffered, Expires: now.Add(time.Minute)})
		default:
			return Lease{}, nil, err
		}
	}
	return Lease{}, nil, errors.New("pool exhausted")
}

// share is this server's part of the pool when the servers split it
// (PoolPeers): the addresses whose offset in the pool is self modulo n.
// Two servers allocating at once would otherwise walk the pool in the same
// order and race for the same next free address at every DISCOVER.
func (s *sharedStore) share() (self, n uint64) {
	pp, ok := s.shared.(PoolPeers)
	if !ok {
		return 0, 1
	}
	i, k := pp.PoolPeers()
	if k <= 1 || i < 0 || i >= k {
		return 0, 1
	}
	return uint64(i), uint64(k)
}

// candidate picks the next address to try, first from this server's
// share; caller does not hold t.mu.
func (s *sharedStore) candidate(p *pool, mac string, want netip.Addr, now time.Time, tried map[netip.Addr]bool) (netip.Addr, bool) {
	self, n := s.share()
	t := s.leaseTable
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, ok := t.byMAC[mac]; ok && p.contains(cur.IP) && !tried[cur.IP] && t.freeFor(cur.IP, mac, now) {
		return cur.IP, true
	}
	if want.IsValid() && p.contains(want) && !tried[want] && t.freeFor(want, mac, now) {
		return want, true
	}
	size := uint64(p.end) - uint64(p.start) + 1
	off := uint64(0)
	if c := t.cursor; c >= p.start && c <= p.end {
		off = uint64(c - p.start)
	}
	for pass := 0; pass < 2; pass++ { // own share, then any address
		for i := uint64(0); i < size; i++ {
			o := (off + i) % size
			if pass == 0 && o%n != self {
				continue
			}
			ip := addrFrom(p.start + uint32(o))
			if p.skip(ip) || tried[ip] || !t.freeFor(ip, mac, now) {
				continue
			}
			t.cursor = p.start + uint32(o) + 1
			return ip, true
		}
		if n == 1 {
			break
		}
	}
	return netip.Addr{}, false
}

func (s *sharedStore) release(ip netip.Addr, mac string) (bool, durable) {
	ok, _ := s.leaseTable.release(ip, mac)
	if err := s.call(func(ctx context.Context) error { return s.shared.Release(ctx, ip, mac) }); err != nil {
		s.log.Warn("dhcp: release not recorded in the shared lease database", "ip", ip, "mac", mac, "err", err)
	}
	return ok, nil
}

func (s *sharedStore) decline(ip netip.Addr, mac string, until, now time.Time) (bool, durable) {
	ok, _ := s.leaseTable.decline(ip, mac, until, now)
	if ok {
		_ = s.call(func(ctx context.Context) error {
			if err := s.shared.Release(ctx, ip, mac); err != nil {
				return err
			}
			_, err := s.shared.Claim(ctx, Lease{IP: ip, State: StateDeclined, Expires: until})
			return err
		})
	}
	return ok, nil
}

func (s *sharedStore) quarantine(ip netip.Addr, until, now time.Time) (bool, durable) {
	ok, _ := s.leaseTable.quarantine(ip, until, now)
	if ok {
		_ = s.call(func(ctx context.Context) error {
			_, err := s.shared.Claim(ctx, Lease{IP: ip, State: StateDeclined, Expires: until})
			return err
		})
	}
	return ok, nil
}

// claimReserved: nodes.toml reservations are the same on every server.
func (s *sharedStore) claimReserved(ip netip.Addr, mac, node, state string, expires, now time.Time) (Lease, durable, error) {
	l, _, err := s.leaseTable.claimReserved(ip, mac, node, state, expires, now)
	return l, nil, err
}

// refresh loads what the shared database holds into the cache.
func (s *sharedStore) refresh() {
	var ls []Lease
	if err := s.call(func(ctx context.Context) error {
		var err error
		ls, err = s.shared.Leases(ctx)
		return err
	}); err != nil {
		return
	}
	for _, l := range ls {
		s.put(l)
	}
}

func (s *sharedStore) run(ctx context.Context) {
	s.refresh()
	t := time.NewTicker(sharedRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.refresh()
		}
	}
}

func (s *sharedStore) health() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.downErr != nil {
		return false, "shared lease database (etcd) unreachable: new pool leases refused, reservations served: " + s.downErr.Error()
	}
	return true, ""
}

func (s *sharedStore) lost() string { return "" }

var _ leaseStore = (*sharedStore)(nil)
