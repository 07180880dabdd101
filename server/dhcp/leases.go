package dhcp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// LeasesFile is the lease database inside StateDir.
const LeasesFile = "leases.json"

// Lease states.
const (
	StateOffered  = "offered"  // held for a client between OFFER and REQUEST
	StateBound    = "bound"    // ACKed
	StateDeclined = "declined" // a client saw the address in use (DHCPDECLINE); unusable until Expires
)

// Lease is one address held for a MAC (or, when declined, held for nobody).
type Lease struct {
	IP      netip.Addr `json:"ip"`
	MAC     string     `json:"mac,omitempty"`
	Node    string     `json:"node,omitempty"`
	State   string     `json:"state"`
	Expires time.Time  `json:"expires"`
}

// Active reports whether the lease still holds its address at now.
func (l *Lease) Active(now time.Time) bool { return now.Before(l.Expires) }

// errInUse is returned when an address is held by another MAC or declined.
var errInUse = errors.New("address in use")

// leaseTable is the in-memory lease database. Every method takes the lock
// for a short, I/O-free critical section; persistence copies a snapshot
// under the lock and writes it without.
type leaseTable struct {
	mu     sync.Mutex
	byIP   map[netip.Addr]*Lease
	byMAC  map[string]*Lease // a MAC's current (non-declined) lease
	cursor uint32            // where the next pool scan starts (round robin)
	gen    uint64            // bumped on every change
	// changed has capacity 1; a send means "generation moved, persist soon".
	changed chan struct{}
}

func newLeaseTable() *leaseTable {
	return &leaseTable{
		byIP:    map[netip.Addr]*Lease{},
		byMAC:   map[string]*Lease{},
		changed: make(chan struct{}, 1),
	}
}

// touch records a change that belongs on disk; the caller holds t.mu.
// Offers are not persisted (they live for a minute), so changes that only
// concern offers don't call it.
func (t *leaseTable) touch() {
	t.gen++
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// freeFor reports whether ip may be given to mac at now; caller holds t.mu.
func (t *leaseTable) freeFor(ip netip.Addr, mac string, now time.Time) bool {
	l, ok := t.byIP[ip]
	if !ok || !l.Active(now) {
		return true
	}
	return l.State != StateDeclined && l.MAC == mac
}

// claim gives ip to mac in the given state until expires. It fails with
// errInUse when another MAC holds ip or it is declined. Any other lease of
// mac is dropped: a MAC holds at most one address. A bound lease is not
// downgraded to offered by a repeated DISCOVER.
func (t *leaseTable) claim(ip netip.Addr, mac, node, state string, expires, now time.Time) (Lease, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.claimLocked(ip, mac, node, state, expires, now)
}

func (t *leaseTable) claimLocked(ip netip.Addr, mac, node, state string, expires, now time.Time) (Lease, error) {
	if !t.freeFor(ip, mac, now) {
		return Lease{}, errInUse
	}
	dirty := state != StateOffered // does this change belong on disk?
	if old, ok := t.byMAC[mac]; ok && old.IP != ip {
		if t.byIP[old.IP] == old {
			delete(t.byIP, old.IP)
		}
		delete(t.byMAC, mac)
		dirty = dirty || old.State != StateOffered
	}
	cur, ok := t.byIP[ip]
	if ok && cur.MAC != mac {
		// An expired lease of another MAC (or an expired decline): take it over.
		if t.byMAC[cur.MAC] == cur {
			delete(t.byMAC, cur.MAC)
		}
		dirty = dirty || cur.State != StateOffered
		ok = false
	}
	if ok && cur.Active(now) && cur.State == StateBound && state == StateOffered {
		// Re-DISCOVER of a bound client: keep the binding as it is.
		if cur.Node != node {
			cur.Node = node
			t.touch()
		}
		return *cur, nil
	}
	if ok && cur.State == state && cur.Node == node && !expires.After(cur.Expires) {
		if dirty {
			t.touch()
		}
		return *cur, nil // nothing would change (e.g. a retransmitted DISCOVER)
	}
	if ok && cur.State != StateOffered {
		dirty = true
	}
	l := &Lease{IP: ip, MAC: mac, Node: node, State: state, Expires: expires}
	t.byIP[ip] = l
	t.byMAC[mac] = l
	if dirty {
		t.touch()
	}
	return *l, nil
}

// pool is an inclusive IPv4 range with the addresses to skip.
type pool struct {
	start, end uint32
	// skip reports addresses never handed out from the pool (reservations,
	// the server, network and broadcast addresses).
	skip func(netip.Addr) bool
}

func (p *pool) contains(ip netip.Addr) bool {
	if !ip.Is4() {
		return false
	}
	v := u32(ip)
	return v >= p.start && v <= p.end && !p.skip(ip)
}

// allocate picks a pool address for mac and claims it: the MAC's current
// address if still valid, else want (the client's requested address) if
// free, else the next free address after the round-robin cursor.
func (t *leaseTable) allocate(p *pool, mac, node string, want netip.Addr, state string, expires, now time.Time) (Lease, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, ok := t.byMAC[mac]; ok && p.contains(cur.IP) && t.freeFor(cur.IP, mac, now) {
		return t.claimLocked(cur.IP, mac, node, state, expires, now)
	}
	if want.IsValid() && p.contains(want) && t.freeFor(want, mac, now) {
		return t.claimLocked(want, mac, node, state, expires, now)
	}
	size := uint64(p.end) - uint64(p.start) + 1
	off := uint64(0)
	if c := t.cursor; c >= p.start && c <= p.end {
		off = uint64(c - p.start)
	}
	for i := uint64(0); i < size; i++ {
		v := p.start + uint32((off+i)%size)
		ip := addrFrom(v)
		if p.skip(ip) || !t.freeFor(ip, mac, now) {
			continue
		}
		t.cursor = v + 1
		return t.claimLocked(ip, mac, node, state, expires, now)
	}
	return Lease{}, errPoolExhausted
}

var errPoolExhausted = errors.New("address pool exhausted")

// byMACLease returns mac's current lease.
func (t *leaseTable) byMACLease(mac string) (Lease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.byMAC[mac]
	if !ok {
		return Lease{}, false
	}
	return *l, true
}

// lookupIP returns the lease holding ip (any state, active or not).
func (t *leaseTable) lookupIP(ip netip.Addr) (Lease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.byIP[ip]
	if !ok {
		return Lease{}, false
	}
	return *l, true
}

// release frees ip when mac holds it (DHCPRELEASE).
func (t *leaseTable) release(ip netip.Addr, mac string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.byIP[ip]
	if !ok || l.MAC != mac || l.State == StateDeclined {
		return false
	}
	delete(t.byIP, ip)
	if t.byMAC[mac] == l {
		delete(t.byMAC, mac)
	}
	t.touch()
	return true
}

// decline marks ip unusable until until (DHCPDECLINE). Only the MAC the
// address was offered or bound to may decline it.
func (t *leaseTable) decline(ip netip.Addr, mac string, until time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.byIP[ip]
	if !ok || l.MAC != mac || l.State == StateDeclined {
		return false
	}
	if t.byMAC[mac] == l {
		delete(t.byMAC, mac)
	}
	t.byIP[ip] = &Lease{IP: ip, MAC: mac, Node: l.Node, State: StateDeclined, Expires: until}
	t.touch()
	return true
}

// forgetOffer drops mac's lease if it is only offered (the client chose
// another server).
func (t *leaseTable) forgetOffer(mac string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.byMAC[mac]
	if !ok || l.State != StateOffered {
		return
	}
	delete(t.byMAC, mac)
	if t.byIP[l.IP] == l {
		delete(t.byIP, l.IP)
	}
}

// inUse counts active offered and bound leases.
func (t *leaseTable) inUse(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, l := range t.byIP {
		if l.State != StateDeclined && l.Active(now) {
			n++
		}
	}
	return n
}

// snapshot copies the leases (without offers unless withOffers) sorted by
// address, with the generation.
func (t *leaseTable) snapshot(withOffers bool) ([]Lease, uint64) {
	t.mu.Lock()
	out := make([]Lease, 0, len(t.byIP))
	for _, l := range t.byIP {
		if withOffers || l.State != StateOffered {
			out = append(out, *l)
		}
	}
	gen := t.gen
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return u32(out[i].IP) < u32(out[j].IP) })
	return out, gen
}

// load replaces the table's content (used once at start).
func (t *leaseTable) load(ls []Lease) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byIP = map[netip.Addr]*Lease{}
	t.byMAC = map[string]*Lease{}
	for i := range ls {
		l := ls[i]
		if !l.IP.Is4() {
			continue
		}
		if old, dup := t.byIP[l.IP]; dup && old.Expires.After(l.Expires) {
			continue
		}
		t.byIP[l.IP] = &l
		if l.State != StateDeclined && l.MAC != "" {
			if old, ok := t.byMAC[l.MAC]; !ok || l.Expires.After(old.Expires) {
				t.byMAC[l.MAC] = &l
			}
		}
	}
	// Drop byIP entries of a MAC that has a newer lease elsewhere: a MAC holds one address.
	for ip, l := range t.byIP {
		if l.State != StateDeclined && t.byMAC[l.MAC] != l {
			delete(t.byIP, ip)
		}
	}
}

// leaseFile is the on-disk form of the table.
type leaseFile struct {
	Version int     `json:"version"`
	Leases  []Lease `json:"leases"`
}

// loadLeases reads path; a missing file is an empty table.
func loadLeases(path string) ([]Lease, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	var f leaseFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse leases %s: %w", path, err)
	}
	return f.Leases, nil
}

// writeLeases writes ls to path atomically: temp file in the same
// directory, fsync, rename. One lease per line.
func writeLeases(path string, ls []Lease) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".leases-*.tmp")
	if err != nil {
		return fmt.Errorf("write leases: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	w := bufio.NewWriterSize(tmp, 64<<10)
	w.WriteString("{\"version\": 1, \"leases\": [")
	for i := range ls {
		b, err := json.Marshal(&ls[i])
		if err != nil {
			tmp.Close()
			return fmt.Errorf("encode lease %s: %w", ls[i].IP, err)
		}
		if i > 0 {
			w.WriteByte(',')
		}
		w.WriteString("\n  ")
		w.Write(b)
	}
	w.WriteString("\n]}\n")
	if err := w.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("write leases %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync leases %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close leases %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install leases: %w", err)
	}
	return nil
}

// persist writes the table to path whenever it changes, at most once per
// debounce, and once more when ctx ends. onErr is called for failed writes.
// The wait between writes grows to 20 times the last write's duration, so
// rewriting a large table under heavy churn takes at most ~5% of the time.
func (t *leaseTable) persist(ctx context.Context, path string, debounce time.Duration, log *slog.Logger, onErr func()) {
	var written uint64 // generation 0 is the loaded (or empty) table: already on disk
	wait := debounce
	flush := func() {
		t.mu.Lock()
		gen := t.gen
		t.mu.Unlock()
		if gen == written {
			return
		}
		start := time.Now()
		ls, gen := t.snapshot(false)
		if err := writeLeases(path, ls); err != nil {
			log.Error("dhcp: persist leases", "err", err)
			onErr()
			return
		}
		written = gen
		wait = max(debounce, 20*time.Since(start))
	}
	timer := time.NewTimer(debounce)
	timer.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			flush()
			return
		case <-t.changed:
			if !pending {
				pending = true
				timer.Reset(wait)
			}
		case <-timer.C:
			pending = false
			flush()
		}
	}
}

func u32(ip netip.Addr) uint32 {
	b := ip.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addrFrom(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
