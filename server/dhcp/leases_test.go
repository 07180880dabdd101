package dhcp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func testPool(start, end string, skip ...string) *pool {
	sk := map[netip.Addr]bool{}
	for _, s := range skip {
		sk[netip.MustParseAddr(s)] = true
	}
	return &pool{start: u32(netip.MustParseAddr(start)), end: u32(netip.MustParseAddr(end)),
		skip: func(a netip.Addr) bool { return sk[a] }}
}

func TestAllocatorUniqueAndSticky(t *testing.T) {
	tb := newLeaseTable()
	now := time.Unix(1e9, 0)
	p := testPool("10.0.0.10", "10.0.0.19", "10.0.0.12")
	got := map[netip.Addr]string{}
	for i := 0; i < 9; i++ {
		mac := fmt.Sprintf("02:00:00:00:00:%02x", i)
		l, err := tb.allocate(p, mac, "", netip.Addr{}, StateBound, now.Add(time.Hour), now)
		if err != nil {
			t.Fatalf("allocate %d: %v", i, err)
		}
		if l.IP == netip.MustParseAddr("10.0.0.12") {
			t.Fatal("allocated a skipped address")
		}
		if other, dup := got[l.IP]; dup {
			t.Fatalf("%s given to %s and %s", l.IP, other, mac)
		}
		got[l.IP] = mac
	}
	if _, err := tb.allocate(p, "02:00:00:00:00:ff", "", netip.Addr{}, StateBound, now.Add(time.Hour), now); err != errPoolExhausted {
		t.Fatalf("full pool: %v", err)
	}
	// Sticky: a MAC gets its own address again, even when asking for another.
	l, err := tb.allocate(p, "02:00:00:00:00:03", "", netip.MustParseAddr("10.0.0.19"), StateBound, now.Add(time.Hour), now)
	if err != nil || got[l.IP] != "02:00:00:00:00:03" {
		t.Fatalf("sticky: %v %v", l, err)
	}
	// Expired leases are reused; the old holder loses its index entry.
	later := now.Add(2 * time.Hour)
	l, err = tb.allocate(p, "02:00:00:00:00:ff", "", netip.Addr{}, StateBound, later.Add(time.Hour), later)
	if err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	old := got[l.IP]
	if cur, ok := tb.byMACLease(old); ok && cur.IP == l.IP {
		t.Errorf("old holder %s still indexed at %s", old, l.IP)
	}
}

func TestAllocatorPrefersRequested(t *testing.T) {
	tb := newLeaseTable()
	now := time.Unix(1e9, 0)
	p := testPool("10.0.0.10", "10.0.0.19")
	l, err := tb.allocate(p, "02:00:00:00:00:01", "", netip.MustParseAddr("10.0.0.15"), StateOffered, now.Add(time.Minute), now)
	if err != nil || l.IP != netip.MustParseAddr("10.0.0.15") {
		t.Fatalf("requested address not honoured: %v %v", l, err)
	}
	// Outside the pool: ignored.
	l, err = tb.allocate(p, "02:00:00:00:00:02", "", netip.MustParseAddr("10.0.0.200"), StateOffered, now.Add(time.Minute), now)
	if err != nil || !p.contains(l.IP) {
		t.Fatalf("out-of-pool request: %v %v", l, err)
	}
}

func TestClaimOneAddressPerMAC(t *testing.T) {
	tb := newLeaseTable()
	now := time.Unix(1e9, 0)
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	if _, err := tb.claim(a, "m1", "", StateBound, now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.claim(a, "m2", "", StateOffered, now.Add(time.Hour), now); err != errInUse {
		t.Fatalf("second MAC claimed a bound address: %v", err)
	}
	// m1 moves to b: a is free again.
	if _, err := tb.claim(b, "m1", "", StateBound, now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if _, ok := tb.lookupIP(a); ok {
		t.Error("old address of a moved MAC still held")
	}
	// A bound lease is not downgraded by a DISCOVER.
	l, err := tb.claim(b, "m1", "", StateOffered, now.Add(time.Minute), now)
	if err != nil || l.State != StateBound || !l.Expires.Equal(now.Add(time.Hour)) {
		t.Errorf("re-offer changed the binding: %+v %v", l, err)
	}
	if n := tb.inUse(now); n != 1 {
		t.Errorf("inUse = %d", n)
	}
}

func TestConcurrentAllocationNeverDuplicates(t *testing.T) {
	tb := newLeaseTable()
	now := time.Unix(1e9, 0)
	p := testPool("10.0.0.1", "10.0.0.200")
	var wg sync.WaitGroup
	results := make([]netip.Addr, 400)
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			l, err := tb.allocate(p, fmt.Sprintf("mac-%d", i), "", netip.Addr{}, StateBound, now.Add(time.Hour), now)
			if err == nil {
				results[i] = l.IP
			}
		}(i)
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	n := 0
	for _, ip := range results {
		if !ip.IsValid() {
			continue
		}
		n++
		if seen[ip] {
			t.Fatalf("%s handed out twice", ip)
		}
		seen[ip] = true
	}
	if n != 200 {
		t.Errorf("%d addresses handed out from a 200-address pool", n)
	}
}

func TestLeasePersistence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state", LeasesFile)
	tb := newLeaseTable()
	now := time.Now()
	if _, err := tb.claim(netip.MustParseAddr("10.0.0.5"), "02:00:00:00:00:01", "n1", StateBound, now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	errs := 0
	go func() {
		defer close(done)
		tb.persist(ctx, path, 10*time.Millisecond, quietLog(), func() { errs++ })
	}()
	// A change after the writer started is written within the debounce.
	if _, err := tb.claim(netip.MustParseAddr("10.0.0.6"), "02:00:00:00:00:02", "", StateBound, now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ls, err := loadLeases(path)
		if err == nil && len(ls) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leases not written: %v %v", ls, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	tb.release(netip.MustParseAddr("10.0.0.6"), "02:00:00:00:00:02")
	cancel()
	<-done // the final flush happens before persist returns
	ls, err := loadLeases(path)
	if err != nil || len(ls) != 1 || ls[0].Node != "n1" || ls[0].State != StateBound {
		t.Fatalf("after final flush: %+v %v", ls, err)
	}
	if errs != 0 {
		t.Errorf("%d write errors", errs)
	}
	// No temp files left behind.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("state dir holds %d entries", len(ents))
	}
	// Load into a fresh table.
	tb2 := newLeaseTable()
	tb2.load(ls)
	if l, ok := tb2.byMACLease("02:00:00:00:00:01"); !ok || l.IP != netip.MustParseAddr("10.0.0.5") {
		t.Errorf("reloaded: %+v %v", l, ok)
	}
}

func TestLoadLeasesDamaged(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, LeasesFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, testConfig{})
	// New with a damaged file logs and starts empty.
	srv, err := New(Options{Store: e.store, StateDir: dir, Log: quietLog()})
	if err != nil {
		t.Fatalf("damaged lease file stopped New: %v", err)
	}
	if len(srv.Leases()) != 0 {
		t.Error("leases from a damaged file")
	}
	if ls, err := loadLeases(filepath.Join(dir, "missing.json")); err != nil || ls != nil {
		t.Errorf("missing file: %v %v", ls, err)
	}
}

func TestLoadKeepsOneAddressPerMAC(t *testing.T) {
	now := time.Now()
	tb := newLeaseTable()
	tb.load([]Lease{
		{IP: netip.MustParseAddr("10.0.0.1"), MAC: "m", State: StateBound, Expires: now.Add(time.Hour)},
		{IP: netip.MustParseAddr("10.0.0.2"), MAC: "m", State: StateBound, Expires: now.Add(2 * time.Hour)},
		{IP: netip.MustParseAddr("10.0.0.3"), MAC: "x", State: StateDeclined, Expires: now.Add(time.Hour)},
	})
	if _, ok := tb.lookupIP(netip.MustParseAddr("10.0.0.1")); ok {
		t.Error("older lease of the same MAC kept")
	}
	if l, ok := tb.byMACLease("m"); !ok || l.IP != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("byMAC = %+v", l)
	}
	if _, ok := tb.lookupIP(netip.MustParseAddr("10.0.0.3")); !ok {
		t.Error("declined address dropped")
	}
}
