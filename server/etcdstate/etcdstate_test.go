package etcdstate

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wwcluster/ww/server/etcdstate/etcdtest"
)

func TestMain(m *testing.M) {
	etcdtest.MaybeRunChild()
	os.Exit(m.Run())
}

// connect gives tests a generous timeout: under -race on a busy machine an
// embedded etcd can take seconds per transaction, and these tests are about
// correctness, not speed.
func connect(t *testing.T, endpoint, id string) *Client {
	t.Helper()
	return connectTimeout(t, endpoint, id, 20*time.Second)
}

func connectTimeout(t *testing.T, endpoint, id string, timeout time.Duration) *Client {
	t.Helper()
	c, err := Connect(Options{Endpoints: []string{endpoint}, ServerID: id, Prefix: "/t/", Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func pool(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	a := netip.MustParseAddr("10.9.0.100")
	for i := range out {
		out[i] = a
		a = a.Next()
	}
	return out
}

// checkUnique fails when an address has two MACs or a MAC two addresses.
func checkUnique(t *testing.T, ls []Lease) {
	t.Helper()
	byMAC := map[string]netip.Addr{}
	seen := map[netip.Addr]string{}
	for _, l := range ls {
		if m, dup := seen[l.IP]; dup {
			t.Fatalf("address %s held twice (%s, %s)", l.IP, m, l.MAC)
		}
		seen[l.IP] = l.MAC
		if l.MAC == "" {
			continue
		}
		if ip, dup := byMAC[l.MAC]; dup {
			t.Fatalf("MAC %s holds %s and %s", l.MAC, ip, l.IP)
		}
		byMAC[l.MAC] = l.IP
	}
}

// allocate plays a DHCP server's pool scan: the MAC's own address first,
// then the first address the store lets it claim.
func allocate(ctx context.Context, c *Client, addrs []netip.Addr, mac string, start int) (netip.Addr, error) {
	for i := range addrs {
		ip := addrs[(start+i)%len(addrs)]
		l, err := c.Claim(ctx, Lease{IP: ip, MAC: mac, State: "bound", Expires: time.Now().Add(time.Hour)})
		if err == nil {
			return l.IP, nil
		}
		if !errors.Is(err, ErrInUse) {
			return netip.Addr{}, err
		}
	}
	return netip.Addr{}, errors.New("pool exhausted")
}

// Two servers race for one pool: every MAC asks both at once (as two
// reservation-mode servers answering one DISCOVER do).
func TestTwoServersOnePoolNeverShareAnAddress(t *testing.T) {
	e := etcdtest.Start(t)
	a, b := connect(t, e.Endpoint, "a"), connect(t, e.Endpoint, "b")
	addrs := pool(40)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string][]netip.Addr{}
	for i := 0; i < 40; i++ {
		mac := fmt.Sprintf("52:54:00:00:01:%02x", i)
		for si, c := range []*Client{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ip, err := allocate(ctx, c, addrs, mac, si*7) // the servers scan from different places
				if err != nil {
					t.Errorf("%s on %s: %v", mac, c.ID(), err)
					return
				}
				mu.Lock()
				got[mac] = append(got[mac], ip)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	ls, err := a.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkUnique(t, ls)
	if len(ls) != 40 {
		t.Fatalf("%d leases in etcd, want 40", len(ls))
	}
	holder := map[netip.Addr]string{}
	for _, l := range ls {
		holder[l.IP] = l.MAC
	}
	// Both servers must have told a MAC the same address, the one etcd holds.
	for mac, ips := range got {
		if len(ips) != 2 || ips[0] != ips[1] || holder[ips[0]] != mac {
			t.Fatalf("%s was told %v; etcd holds %v", mac, ips, holder)
		}
	}
}

func TestClaimMovesAndReleaseFrees(t *testing.T) {
	e := etcdtest.Start(t)
	c := connect(t, e.Endpoint, "a")
	ctx := context.Background()
	ip1, ip2 := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")
	exp := time.Now().Add(time.Hour)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	claim := func(ip netip.Addr, mac string, exp time.Time) (netip.Addr, error) {
		l, err := c.Claim(ctx, Lease{IP: ip, MAC: mac, State: "bound", Expires: exp})
		return l.IP, err
	}
	if got, err := claim(ip1, "m1", exp); err != nil || got != ip1 {
		t.Fatalf("first claim: %v %v", got, err)
	}
	if _, err := claim(ip1, "m2", exp); !errors.Is(err, ErrInUse) {
		t.Fatalf("second MAC on a held address: %v", err)
	}
	if got, err := claim(ip2, "m1", exp); err != nil || got != ip1 { // a MAC keeps its address
		t.Fatalf("m1 asking for another address got %v %v, want its own %v", got, err, ip1)
	}
	must(c.Release(ctx, ip1, "m2")) // not m2's: nothing happens
	if l, ok, _ := c.LeaseOf(ctx, "m1"); !ok || l.IP != ip1 {
		t.Fatalf("m1 lease after a foreign release: %v %v", l, ok)
	}
	must(c.Release(ctx, ip1, "m1"))
	if _, ok, _ := c.LeaseOf(ctx, "m1"); ok {
		t.Fatal("m1 still holds an address after release")
	}
	if got, err := claim(ip1, "m2", exp); err != nil || got != ip1 { // free again
		t.Fatalf("claim after release: %v %v", got, err)
	}
	// An expired holder does not block.
	if _, err := claim(ip2, "m3", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, err := claim(ip2, "m4", exp); err != nil || got != ip2 {
		t.Fatalf("claim over an expired lease: %v %v", got, err)
	}
	ls, err := c.Leases(ctx)
	must(err)
	checkUnique(t, ls)
	if len(ls) != 2 {
		t.Fatalf("leases %v", ls)
	}
}

// etcd killed and restarted while two servers allocate: claims during the
// outage fail with ErrUnavailable (never a silent success), and afterwards
// no address is held twice.
func TestEtcdKilledUnderLoad(t *testing.T) {
	p := etcdtest.StartProcess(t)
	// A short timeout so the outage shows up as ErrUnavailable quickly.
	a, b := connectTimeout(t, p.Endpoint, "a", 2*time.Second), connectTimeout(t, p.Endpoint, "b", 2*time.Second)
	addrs := pool(200)
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	var ok, unavailable int
	for si, c := range []*Client{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				mac := fmt.Sprintf("52:54:00:02:%02x:%02x", i/256%256, i%256)
				_, err := allocate(ctx, c, addrs, mac, si*50+i)
				mu.Lock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrUnavailable):
					unavailable++
				}
				mu.Unlock()
				if i >= 150 {
					return
				}
			}
		}()
	}
	waitFor := func(cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatal("condition not reached in 30 s")
			}
			time.Sleep(10 * time.Millisecond) // polling a counter, not synchronising
		}
	}
	waitFor(func() bool { mu.Lock(); defer mu.Unlock(); return ok >= 20 })
	p.Kill()
	waitFor(func() bool { mu.Lock(); defer mu.Unlock(); return unavailable >= 2 })
	p.Restart()
	wg.Wait()
	close(stop)
	ls, err := a.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkUnique(t, ls)
	if ok < 40 || unavailable < 2 {
		t.Fatalf("ok=%d unavailable=%d: the outage or the recovery was not exercised", ok, unavailable)
	}
	t.Logf("claims ok=%d refused while etcd was down=%d, leases=%d", ok, unavailable, len(ls))
}

func TestStatusBatchedAndWatchedByOtherServer(t *testing.T) {
	e := etcdtest.Start(t)
	a, b := connect(t, e.Endpoint, "a"), connect(t, e.Endpoint, "b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, rev, err := b.LoadStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan StatusRecord, 1000)
	go b.WatchStatus(ctx, rev, func(r StatusRecord) { seen <- r })

	pub := a.NewStatusPublisher(time.Hour) // flushed by hand below
	now := time.Now().UTC()
	for i := 0; i < 250; i++ {
		node := fmt.Sprintf("n%03d", i)
		pub.Put(StatusRecord{Node: node, Stage: "KERNEL", Sent: "vmlinuz", Time: now, LastSeen: now})
		pub.Put(StatusRecord{Node: node, Stage: "IMAGE", Sent: "image", Time: now.Add(time.Second), LastSeen: now.Add(time.Second)})
	}
	if pub.Pending() != 250 {
		t.Fatalf("pending %d, want 250 (one per node)", pub.Pending())
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]StatusRecord{}
	timeout := time.After(30 * time.Second)
	for len(got) < 250 {
		select {
		case r := <-seen:
			got[r.Node] = r
		case <-timeout:
			t.Fatalf("watch delivered %d of 250 records", len(got))
		}
	}
	for n, r := range got {
		if r.Stage != "IMAGE" || r.Server != "a" {
			t.Fatalf("%s: %+v", n, r)
		}
	}
	recs, _, err := b.LoadStatus(ctx)
	if err != nil || len(recs) != 250 {
		t.Fatalf("LoadStatus: %d records, %v", len(recs), err)
	}
}

func TestServersDisagreement(t *testing.T) {
	e := etcdtest.Start(t)
	a, b := connect(t, e.Endpoint, "a"), connect(t, e.Endpoint, "b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	la, err := a.PublishServer(ctx, ServerInfo{Address: "10.0.0.1:9873", ConfigFingerprint: "c1", ImagesFingerprint: "i1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.PublishServer(ctx, ServerInfo{Address: "10.0.0.2:9873", ConfigFingerprint: "c1", ImagesFingerprint: "i1"}, 0); err != nil {
		t.Fatal(err)
	}
	ss, err := a.Servers(ctx)
	if err != nil || len(ss) != 2 {
		t.Fatalf("servers %v %v", ss, err)
	}
	if d := Disagreement(ss); d != "" {
		t.Fatalf("agreeing servers reported: %s", d)
	}
	if _, err := a.PublishServer(ctx, ServerInfo{Address: "10.0.0.1:9873", ConfigFingerprint: "c2", ImagesFingerprint: "i1"}, la); err != nil {
		t.Fatal(err)
	}
	ss, _ = b.Servers(ctx)
	if d := Disagreement(ss); d == "" {
		t.Fatal("differing configs not reported")
	}
}

// A DORA answered by two servers: the client takes a's offer and a binds
// it; b's offer for the same DISCOVER reaches etcd afterwards (b was slower,
// or its transaction was retried). That late offer must neither turn the
// binding back into an offer nor shorten it: a one-minute offer expires, and
// the address goes to another MAC while the first still has its hour.
func TestLateOfferKeepsBinding(t *testing.T) {
	e := etcdtest.Start(t)
	a, b := connect(t, e.Endpoint, "a"), connect(t, e.Endpoint, "b")
	ctx := context.Background()
	ip1, ip2 := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")
	const mac = "52:54:00:00:03:01"
	offer := func(c *Client, ip netip.Addr) Lease {
		t.Helper()
		l, err := c.Claim(ctx, Lease{IP: ip, MAC: mac, State: "offered", Expires: time.Now().Add(time.Minute)})
		if err != nil {
			t.Fatalf("offer of %s by %s: %v", ip, c.ID(), err)
		}
		return l
	}
	offer(a, ip1)
	offer(b, ip1)
	boundUntil := time.Now().Add(time.Hour)
	bound, err := a.Claim(ctx, Lease{IP: ip1, MAC: mac, Node: "n1", State: "bound", Expires: boundUntil})
	if err != nil || bound.State != "bound" || !bound.Expires.Equal(boundUntil) {
		t.Fatalf("REQUEST: %+v %v", bound, err)
	}
	wantBound := func(what string, l Lease) {
		t.Helper()
		if l.IP != ip1 || l.MAC != mac || l.State != "bound" || !l.Expires.Equal(boundUntil) || l.Server != "a" || l.Node != "n1" {
			t.Fatalf("%s: %+v, want ip %s bound by a for n1 until %s", what, l, ip1, boundUntil)
		}
	}
	wantBound("late offer of the bound address", offer(b, ip1))
	// b's cache may not know of the binding and offer another address.
	wantBound("late offer of another address", offer(b, ip2))
	// A renewal asking for less time does not shorten what is held.
	l, err := a.Claim(ctx, Lease{IP: ip1, MAC: mac, Node: "n1", State: "bound", Expires: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	wantBound("shorter renewal", l)
	got, ok, err := b.LeaseOf(ctx, mac)
	if err != nil || !ok {
		t.Fatalf("LeaseOf: %v %v", ok, err)
	}
	wantBound("stored lease", got)
	// etcd expires the keys with their etcd lease: it must outlive the
	// binding, not the offer.
	for _, key := range []string{a.ipKey(ip1), a.macKey(mac)} {
		r, err := a.cli.Get(ctx, key)
		if err != nil || len(r.Kvs) != 1 {
			t.Fatalf("get %s: %v %v", key, r, err)
		}
		ttl, err := a.cli.TimeToLive(ctx, clientv3.LeaseID(r.Kvs[0].Lease))
		if err != nil {
			t.Fatal(err)
		}
		if left := time.Duration(ttl.TTL) * time.Second; left < time.Until(boundUntil)-time.Minute {
			t.Fatalf("%s expires from etcd in %s; the binding lasts %s", key, left, time.Until(boundUntil).Round(time.Second))
		}
	}
	if _, err := b.Claim(ctx, Lease{IP: ip1, MAC: "52:54:00:00:03:02", State: "offered", Expires: time.Now().Add(time.Minute)}); !errors.Is(err, ErrInUse) {
		t.Fatalf("another MAC offered the bound address: %v", err)
	}
	// An offer still becomes a binding, and a binding is still extended.
	l, err = a.Claim(ctx, Lease{IP: ip1, MAC: mac, Node: "n1", State: "bound", Expires: boundUntil.Add(time.Hour)})
	if err != nil || l.State != "bound" || !l.Expires.Equal(boundUntil.Add(time.Hour)) {
		t.Fatalf("longer renewal: %+v %v", l, err)
	}
}

// Many DORAs at once, each answered by both servers, with the second
// server's offer racing the first server's binding: every binding survives
// with its full expiry, and no address has two MACs.
func TestRacingOffersKeepBindings(t *testing.T) {
	e := etcdtest.Start(t)
	a, b := connect(t, e.Endpoint, "a"), connect(t, e.Endpoint, "b")
	addrs := pool(40)
	ctx := context.Background()
	boundUntil := time.Now().Add(time.Hour).Truncate(time.Second)
	// claim plays a server's pool scan from addrs[start].
	claim := func(c *Client, start int, mac, state string, until time.Time) (Lease, error) {
		for i := range addrs {
			l, err := c.Claim(ctx, Lease{IP: addrs[(start+i)%len(addrs)], MAC: mac, State: state, Expires: until})
			if !errors.Is(err, ErrInUse) {
				return l, err
			}
		}
		return Lease{}, errors.New("pool exhausted")
	}
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		mac := fmt.Sprintf("52:54:00:00:04:%02x", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := claim(a, i, mac, "offered", time.Now().Add(time.Minute))
			if err != nil {
				t.Errorf("%s: offer: %v", mac, err)
				return
			}
			// The REQUEST for a's offer and b's (late) offer, at once.
			var late sync.WaitGroup
			late.Add(1)
			go func() {
				defer late.Done()
				if _, err := claim(b, i+13, mac, "offered", time.Now().Add(time.Minute)); err != nil {
					t.Errorf("%s: late offer: %v", mac, err)
				}
			}()
			l, err := a.Claim(ctx, Lease{IP: o.IP, MAC: mac, State: "bound", Expires: boundUntil})
			late.Wait()
			if err != nil || l.IP != o.IP {
				t.Errorf("%s: REQUEST of %s: %+v %v", mac, o.IP, l, err)
			}
		}()
	}
	wg.Wait()
	ls, err := b.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkUnique(t, ls)
	if len(ls) != 30 {
		t.Fatalf("%d leases, want 30", len(ls))
	}
	for _, l := range ls {
		if l.State != "bound" || !l.Expires.Equal(boundUntil) {
			t.Errorf("%s %s: %s until %s, want bound until %s", l.IP, l.MAC, l.State, l.Expires, boundUntil)
		}
	}
}
