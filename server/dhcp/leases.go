package dhcp

import (
	"errors"
	"net/netip"
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
// for a short, I/O-free critical section. Changes that belong on disk (not
// offers: they live for a minute) are numbered and handed to the journal,
// when there is one, inside the critical section, so the journal's order is
// the table's order; the caller waits for the returned durable, outside the
// lock, before it tells the client.
type leaseTable struct {
	mu     sync.Mutex
	byIP   map[netip.Addr]*Lease
	byMAC  map[string]*Lease // a MAC's current (non-declined) lease
	cursor uint32            // where the next pool scan starts (round robin)
	// held are the addresses in StateDeclined (some maybe expired): the
	// quarantine, bounded by maxQuarantined.
	held map[netip.Addr]struct{}
	seq  uint64   // number of the last change (journal records carry it)
	log  *journal // nil: memory only
	// pending is the journal batch of the changes made in the current
	// critical section; taken by the method that made them.
	pending *commitBatch
}

func newLeaseTable() *leaseTable {
	return &leaseTable{
		byIP:  map[netip.Addr]*Lease{},
		byMAC: map[string]*Lease{},
		held:  map[netip.Addr]struct{}{},
	}
}

// note records that ip now holds l (or, with l == nil, nothing); caller
// holds t.mu.
func (t *leaseTable) note(ip netip.Addr, l *Lease) {
	t.seq++
	if t.log == nil {
		return
	}
	rec := journalRecord{Seq: t.seq, IP: ip, State: stateFree}
	if l != nil {
		rec.MAC, rec.Node, rec.State, rec.Expires = l.MAC, l.Node, l.State, l.Expires
	}
	t.pending = t.log.append(&rec)
}

// takePending returns (and clears) the journal batch of the changes just
// made; caller holds t.mu. A nil durable means nothing to wait for.
func (t *leaseTable) takePending() durable {
	b := t.pending
	t.pending = nil
	if b == nil {
		return nil
	}
	return b
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
func (t *leaseTable) claim(ip netip.Addr, mac, node, state string, expires, now time.Time) (Lease, durable, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, err := t.claimLocked(ip, mac, node, state, expires, now)
	return l, t.takePending(), err
}

// claimReserved is claim for a nodes.toml reservation: a DECLINE never
// takes a reserved address away, so a hold on it (from an older lease
// file) is dropped first.
func (t *leaseTable) claimReserved(ip netip.Addr, mac, node, state string, expires, now time.Time) (Lease, durable, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.byIP[ip]; ok && l.State == StateDeclined {
		delete(t.byIP, ip)
		delete(t.held, ip)
		t.note(ip, nil)
	}
	l, err := t.claimLocked(ip, mac, node, state, expires, now)
	return l, t.takePending(), err
}

func (t *leaseTable) claimLocked(ip netip.Addr, mac, node, state string, expires, now time.Time) (Lease, error) {
	if !t.freeFor(ip, mac, now) {
		return Lease{}, errInUse
	}
	if old, ok := t.byMAC[mac]; ok && old.IP != ip {
		if t.byIP[old.IP] == old {
			delete(t.byIP, old.IP)
			if old.State != StateOffered {
				t.note(old.IP, nil)
			}
		}
		delete(t.byMAC, mac)
	}
	cur, ok := t.byIP[ip]
	if ok && cur.State == StateDeclined {
		delete(t.held, ip) // expired (freeFor said so): free again
	}
	if ok && (cur.MAC != mac || cur.State == StateDeclined) {
		// An expired lease of another MAC (or an expired decline): take it over.
		if t.byMAC[cur.MAC] == cur {
			delete(t.byMAC, cur.MAC)
		}
		delete(t.byIP, ip)
		if cur.State != StateOffered {
			t.note(ip, nil)
		}
		ok = false
	}
	if ok && cur.Active(now) && cur.State == StateBound && state == StateOffered {
		// Re-DISCOVER of a bound client: keep the binding as it is.
		if cur.Node != node {
			cur.Node = node
			t.note(ip, cur)
		}
		return *cur, nil
	}
	if ok && cur.State == state && cur.Node == node && !expires.After(cur.Expires) {
		return *cur, nil // nothing would change (e.g. a retransmitted DISCOVER)
	}
	l := &Lease{IP: ip, MAC: mac, Node: node, State: state, Expires: expires}
	t.byIP[ip] = l
	t.byMAC[mac] = l
	switch {
	case state != StateOffered:
		t.note(ip, l)
	case ok && cur.State != StateOffered:
		t.note(ip, nil) // a persisted lease of this MAC became an offer
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
func (t *leaseTable) allocate(p *pool, mac, node string, want netip.Addr, state string, expires, now time.Time) (Lease, durable, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, err := t.allocateLocked(p, mac, node, want, state, expires, now)
	return l, t.takePending(), err
}

func (t *leaseTable) allocateLocked(p *pool, mac, node string, want netip.Addr, state string, expires, now time.Time) (Lease, error) {
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
func (t *leaseTable) release(ip netip.Addr, mac string) (bool, durable) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.byIP[ip]
	if !ok || l.MAC != mac || l.State == StateDeclined {
		return false, nil
	}
	delete(t.byIP, ip)
	if t.byMAC[mac] == l {
		delete(t.byMAC, mac)
	}
	if l.State != StateOffered {
		t.note(ip, nil)
	}
	return true, t.takePending()
}

// decline marks ip unusable until until (DHCPDECLINE). Only the MAC the
// address was offered or bound to may decline it, and only while fewer
// than maxQuarantined addresses are held back.
func (t *leaseTable) decline(ip netip.Addr, mac string, until, now time.Time) (bool, durable) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.byIP[ip]
	if !ok || l.MAC != mac || l.State == StateDeclined {
		return false, nil
	}
	if !t.roomLocked(now) {
		return false, nil
	}
	if t.byMAC[mac] == l {
		delete(t.byMAC, mac)
	}
	t.holdLocked(&Lease{IP: ip, MAC: mac, Node: l.Node, State: StateDeclined, Expires: until})
	return true, t.takePending()
}

// quarantine holds ip back for nobody until until (an address that
// answered a probe), dropping whatever lease it had; false when the
// quarantine is full.
func (t *leaseTable) quarantine(ip netip.Addr, until, now time.Time) (bool, durable) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.byIP[ip]; ok && l.State == StateDeclined {
		return true, nil
	}
	if !t.roomLocked(now) {
		return false, nil
	}
	if l, ok := t.byIP[ip]; ok && t.byMAC[l.MAC] == l {
		delete(t.byMAC, l.MAC)
	}
	t.holdLocked(&Lease{IP: ip, State: StateDeclined, Expires: until})
	return true, t.takePending()
}

// maxQuarantined bounds the addresses held back by declines and probes, so
// spoofed DECLINEs cannot empty a pool.
const maxQuarantined = 64

// roomLocked reports whether one more address may be quarantined,
// forgetting expired holds first; caller holds t.mu.
func (t *leaseTable) roomLocked(now time.Time) bool {
	if len(t.held) < maxQuarantined {
		return true
	}
	for ip := range t.held {
		if l, ok := t.byIP[ip]; !ok || l.State != StateDeclined || !l.Active(now) {
			delete(t.held, ip)
		}
	}
	return len(t.held) < maxQuarantined
}

func (t *leaseTable) holdLocked(d *Lease) {
	t.byIP[d.IP] = d
	t.held[d.IP] = struct{}{}
	t.note(d.IP, d)
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
// address.
func (t *leaseTable) snapshot(withOffers bool) []Lease {
	t.mu.Lock()
	out := t.copyLocked(withOffers)
	t.mu.Unlock()
	sortLeases(out)
	return out
}

func (t *leaseTable) copyLocked(withOffers bool) []Lease {
	out := make([]Lease, 0, len(t.byIP))
	for _, l := range t.byIP {
		if withOffers || l.State != StateOffered {
			out = append(out, *l)
		}
	}
	return out
}

func sortLeases(ls []Lease) {
	sort.Slice(ls, func(i, j int) bool { return u32(ls[i].IP) < u32(ls[j].IP) })
}

// load replaces the table's content (used once at start).
func (t *leaseTable) load(ls []Lease) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byIP = map[netip.Addr]*Lease{}
	t.byMAC = map[string]*Lease{}
	t.held = map[netip.Addr]struct{}{}
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
		if l.State == StateDeclined {
			t.held[ip] = struct{}{}
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

// replay applies one journal record on top of what load gave (at start,
// before a journal is attached): the record is the state of its address
// after the change it numbers.
func (t *leaseTable) replay(r *journalRecord) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.held, r.IP)
	if cur, ok := t.byIP[r.IP]; ok {
		delete(t.byIP, r.IP)
		if t.byMAC[cur.MAC] == cur {
			delete(t.byMAC, cur.MAC)
		}
	}
	if r.State != stateFree && r.IP.Is4() {
		l := &Lease{IP: r.IP, MAC: r.MAC, Node: r.Node, State: r.State, Expires: r.Expires}
		if l.State == StateDeclined {
			t.held[r.IP] = struct{}{}
		}
		if l.State != StateDeclined && l.MAC != "" {
			if old, ok := t.byMAC[l.MAC]; ok && t.byIP[old.IP] == old {
				delete(t.byIP, old.IP) // a MAC holds one address
			}
			t.byMAC[l.MAC] = l
		}
		t.byIP[r.IP] = l
	}
	t.seq = max(t.seq, r.Seq)
}
