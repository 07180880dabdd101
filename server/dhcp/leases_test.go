package dhcp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
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
		l, _, err := tb.allocate(p, mac, "", netip.Addr{}, StateBound, now.Add(time.Hour), now)
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
	if _, _, err := tb.allocate(p, "02:00:00:00:00:ff", "", netip.Addr{}, StateBound, now.Add(time.Hour), now); err != errPoolExhausted {
		t.Fatalf("full pool: %v", err)
	}
	// Sticky: a MAC gets its own address again, even when asking for another.
	l, _, err := tb.allocate(p, "02:00:00:00:00:03", "", netip.MustParseAddr("10.0.0.19"), StateBound, now.Add(time.Hour), now)
	if err != nil || got[l.IP] != "02:00:00:00:00:03" {
		t.Fatalf("sticky: %v %v", l, err)
	}
	// Expired leases are reused; the old holder loses its index entry.
	later := now.Add(2 * time.Hour)
	l, _, err = tb.allocate(p, "02:00:00:00:00:ff", "", netip.Addr{}, StateBound, later.Add(time.Hour), later)
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
	l, _, err := tb.allocate(p, "02:00:00:00:00:01", "", netip.MustParseAddr("10.0.0.15"), StateOffered, now.Add(time.Minute), now)
	if err != nil || l.IP != netip.MustParseAddr("10.0.0.15") {
		t.Fatalf("requested address not honoured: %v %v", l, err)
	}
	// Outside the pool: ignored.
	l, _, err = tb.allocate(p, "02:00:00:00:00:02", "", netip.MustParseAddr("10.0.0.200"), StateOffered, now.Add(time.Minute), now)
	if err != nil || !p.contains(l.IP) {
		t.Fatalf("out-of-pool request: %v %v", l, err)
	}
}

func TestClaimOneAddressPerMAC(t *testing.T) {
	tb := newLeaseTable()
	now := time.Unix(1e9, 0)
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	if _, _, err := tb.claim(a, "m1", "", StateBound, now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tb.claim(a, "m2", "", StateOffered, now.Add(time.Hour), now); err != errInUse {
		t.Fatalf("second MAC claimed a bound address: %v", err)
	}
	// m1 moves to b: a is free again.
	if _, _, err := tb.claim(b, "m1", "", StateBound, now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if _, ok := tb.lookupIP(a); ok {
		t.Error("old address of a moved MAC still held")
	}
	// A bound lease is not downgraded by a DISCOVER.
	l, _, err := tb.claim(b, "m1", "", StateOffered, now.Add(time.Minute), now)
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
			l, _, err := tb.allocate(p, fmt.Sprintf("mac-%d", i), "", netip.Addr{}, StateBound, now.Add(time.Hour), now)
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

// runStore runs s's background work until the returned stop is called.
func runStore(t *testing.T, s *fileStore) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// waitDurable blocks until d is on disk and returns the write error.
func waitDurable(t *testing.T, d durable) error {
	t.Helper()
	if d == nil {
		t.Fatal("change with nothing to wait for")
	}
	errc := make(chan error, 1)
	d.whenDurable(func(err error) { errc <- err })
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("change not durable after 10s")
		return nil
	}
}

func openTestStore(t *testing.T, dir string) *fileStore {
	t.Helper()
	s, err := openFileStore(dir, quietLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLeasePersistence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := openTestStore(t, dir)
	stop := runStore(t, s)
	now := time.Now()
	a, b := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.6")
	_, d, err := s.claim(a, "02:00:00:00:00:01", "n1", StateBound, now.Add(time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitDurable(t, d); err != nil {
		t.Fatal(err)
	}
	// Durable means in the journal, before any compaction.
	data, err := os.ReadFile(filepath.Join(dir, JournalFile))
	if err != nil || !strings.Contains(string(data), `"ip":"10.0.0.5"`) {
		t.Fatalf("journal after a durable claim: %v %q", err, data)
	}
	// Offers are not written.
	if _, d, _ := s.claim(b, "02:00:00:00:00:02", "", StateOffered, now.Add(time.Minute), now); d != nil {
		t.Error("an offer waits for the disk")
	}
	if _, d, _ = s.claim(b, "02:00:00:00:00:02", "", StateBound, now.Add(time.Hour), now); d == nil {
		t.Fatal("bound lease not journaled")
	}
	ok, d := s.release(b, "02:00:00:00:00:02")
	if !ok {
		t.Fatal("release failed")
	}
	if err := waitDurable(t, d); err != nil {
		t.Fatal(err)
	}
	stop() // final compaction: leases.json, no journal
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != LeasesFile {
		t.Errorf("state dir after stop: %v", ents)
	}
	s2 := openTestStore(t, dir)
	ls := s2.snapshot(false)
	if len(ls) != 1 || ls[0].IP != a || ls[0].Node != "n1" || ls[0].State != StateBound {
		t.Fatalf("reloaded: %+v", ls)
	}
	if ok, reason := s2.health(); !ok {
		t.Errorf("healthy store reports %q", reason)
	}
}

// TestJournalReplayWithoutCompaction: what a crash leaves (leases.json of
// an earlier compaction, a journal, a torn last line) loads to the state
// of the last durable change.
func TestJournalReplayWithoutCompaction(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	runStore(t, s)
	now := time.Now()
	var last durable
	for i := 0; i < 20; i++ {
		ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)})
		_, d, err := s.claim(ip, fmt.Sprintf("02:00:00:00:00:%02x", i), "", StateBound, now.Add(time.Hour), now)
		if err != nil {
			t.Fatal(err)
		}
		last = d
		if i == 9 {
			// A compaction in the middle: the first ten go to leases.json.
			if err := s.compact(true); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := waitDurable(t, last); err != nil {
		t.Fatal(err)
	}
	if _, d := s.release(netip.MustParseAddr("10.0.0.10"), "02:00:00:00:00:00"); waitDurable(t, d) != nil {
		t.Fatal("release not durable")
	}
	// Copy the files as a crash would leave them (no final compaction), plus a torn line.
	crash := t.TempDir()
	for _, n := range []string{LeasesFile, JournalFile, journalOldFile} {
		if data, err := os.ReadFile(filepath.Join(dir, n)); err == nil {
			if n == JournalFile {
				data = append(data, `{"seq":99,"ip":"10.0.0.`...)
			}
			if err := os.WriteFile(filepath.Join(crash, n), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	s2 := openTestStore(t, crash)
	ls := s2.snapshot(false)
	if len(ls) != 19 {
		t.Fatalf("replayed %d leases, want 19: %+v", len(ls), ls)
	}
	if _, ok := s2.lookupIP(netip.MustParseAddr("10.0.0.10")); ok {
		t.Error("released address came back")
	}
	if ok, reason := s2.health(); !ok {
		t.Errorf("a torn last line made the store unhealthy: %s", reason)
	}
}

func TestLoadLeasesDamaged(t *testing.T) {
	for _, tc := range []struct{ file, content string }{
		{LeasesFile, "{not json"},
		{JournalFile, "{\"seq\":1,\"ip\":\"10.0.0.1\",\"mac\":\"m\",\"state\":\"bound\"}\ngarbage\n{\"seq\":3,\"ip\":\"10.0.0.3\",\"mac\":\"n\",\"state\":\"bound\"}\n"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, testConfig{})
			// New with a damaged file starts, degraded, with the file moved aside.
			srv, err := New(Options{Store: e.store, StateDir: dir, Log: quietLog()})
			if err != nil {
				t.Fatalf("damaged lease file stopped New: %v", err)
			}
			ok, reason := srv.Health()
			if ok || !strings.Contains(reason, tc.file) || !strings.Contains(reason, "moved to") {
				t.Errorf("Health() = %v, %q", ok, reason)
			}
			aside, _ := filepath.Glob(filepath.Join(dir, tc.file+".corrupt-*"))
			if len(aside) != 1 {
				t.Fatalf("corrupt file not moved aside: %v", aside)
			}
			if data, _ := os.ReadFile(aside[0]); string(data) != tc.content {
				t.Errorf("moved-aside file changed: %q", data)
			}
			// Records before the bad line are kept; none after it.
			ls := srv.Leases()
			if tc.file == JournalFile && (len(ls) != 1 || ls[0].IP != netip.MustParseAddr("10.0.0.1")) {
				t.Errorf("leases from a journal damaged at line 2: %+v", ls)
			}
			if tc.file == LeasesFile && len(ls) != 0 {
				t.Errorf("leases from a damaged file: %+v", ls)
			}
		})
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
