package etcdstate

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/wwcluster/ww/server/etcdstate/etcdtest"
)

// connectBatch connects with lease batching (batch > 1) or without (1) to
// one member of a cluster, metrics in reg.
func connectBatch(t *testing.T, endpoint, id string, batch int, reg prometheus.Registerer) *Client {
	t.Helper()
	c, err := Connect(Options{Endpoints: []string{endpoint}, ServerID: id, Prefix: "/t/", Timeout: 20 * time.Second,
		LeaseBatch: batch, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func histCount(t *testing.T, h prometheus.Histogram) (count uint64, sum float64) {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// A DHCP storm on a 3-member cluster, batched and not: two servers, each
// on its own member, offer then bind 80 MACs, each MAC asked of both
// servers at once. No address may have two MACs, both servers must tell a
// MAC the same address, every binding must be in etcd, and the batched
// writer must have put several claims in a transaction.
func TestBatchedClaimsOnThreeMembers(t *testing.T) {
	e := etcdtest.StartCluster(t, 3)
	for _, batch := range []int{1, DefaultLeaseBatch} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			prefix := fmt.Sprintf("/storm%d/", batch)
			a := connectBatch(t, e.Endpoints[0], "a", batch, nil)
			b := connectBatch(t, e.Endpoints[1], "b", batch, nil)
			a.prefix, b.prefix = prefix, prefix
			addrs := pool(100)
			const macs = 80
			var wg sync.WaitGroup
			var mu sync.Mutex
			got := map[string][]netip.Addr{}
			for i := 0; i < macs; i++ {
				mac := fmt.Sprintf("52:54:00:05:%02x:%02x", batch, i)
				for si, c := range []*Client{a, b} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ip, err := offerAndBind(c, addrs, mac, i+si*37)
						mu.Lock()
						defer mu.Unlock()
						if err != nil {
							t.Errorf("%s on %s: %v", mac, c.ID(), err)
							return
						}
						got[mac] = append(got[mac], ip)
					}()
				}
			}
			wg.Wait()
			ls, err := a.Leases(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			checkUnique(t, ls)
			holder := map[netip.Addr]Lease{}
			for _, l := range ls {
				holder[l.IP] = l
			}
			for mac, ips := range got {
				if len(ips) != 2 || ips[0] != ips[1] || holder[ips[0]].MAC != mac || holder[ips[0]].State != StateBound {
					t.Fatalf("%s was told %v; etcd holds %+v", mac, ips, holder[ips[0]])
				}
			}
			if len(ls) != macs {
				t.Fatalf("%d leases in etcd, want %d", len(ls), macs)
			}
			if batch == 1 {
				return
			}
			n, sum := histCount(t, a.batch.m.batchSize)
			t.Logf("server a: %d batches, %.1f claims per batch; conflicts a=%v b=%v", n, sum/float64(n),
				testutil.ToFloat64(a.batch.m.conflicts), testutil.ToFloat64(b.batch.m.conflicts))
			if n == 0 || sum/float64(n) <= 1.5 {
				t.Errorf("server a wrote %v claims in %d transactions: not batched", sum, n)
			}
		})
	}
}

// offerAndBind plays a server's DORA for mac: an offer from the pool scan
// starting at addrs[start], then the binding of the offered address.
func offerAndBind(c *Client, addrs []netip.Addr, mac string, start int) (netip.Addr, error) {
	ctx := context.Background()
	for i := range addrs {
		ip := addrs[(start+i)%len(addrs)]
		o, err := c.Claim(ctx, Lease{IP: ip, MAC: mac, State: StateOffered, Expires: time.Now().Add(time.Minute)})
		if errors.Is(err, ErrInUse) {
			continue
		}
		if err != nil {
			return netip.Addr{}, err
		}
		l, err := c.Claim(ctx, Lease{IP: o.IP, MAC: mac, State: StateBound, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			return netip.Addr{}, fmt.Errorf("bind %s: %w", o.IP, err)
		}
		if l.IP != o.IP {
			return netip.Addr{}, fmt.Errorf("offered %s, bound %s", o.IP, l.IP)
		}
		return l.IP, nil
	}
	return netip.Addr{}, errors.New("pool exhausted")
}

// newReq is a claim as Claim queues it, for driving round by hand.
func newReq(l Lease) *claimReq {
	return &claimReq{l: l, ctx: context.Background(), queued: time.Now(), done: make(chan claimResult, 1)}
}

// One claim of a batch whose key another server changed fails alone: the
// others commit in the same transaction, and the loser is decided again
// (here by a read: it needs no write).
func TestBatchConflictFailsAlone(t *testing.T) {
	e := etcdtest.StartCluster(t, 3)
	a := connectBatch(t, e.Endpoints[0], "a", DefaultLeaseBatch, nil)
	b := connectBatch(t, e.Endpoints[2], "b", 1, nil)
	ctx := context.Background()
	ips := pool(4)
	hour := time.Now().Add(time.Hour)
	// a binds ips[0] to m0: its cache knows the keys' revisions.
	if _, err := a.Claim(ctx, Lease{IP: ips[0], MAC: "m0", State: StateBound, Expires: hour}); err != nil {
		t.Fatal(err)
	}
	// b extends that binding behind a's back: a's cache is stale now.
	longer := hour.Add(time.Hour)
	if _, err := b.Claim(ctx, Lease{IP: ips[0], MAC: "m0", State: StateBound, Expires: longer}); err != nil {
		t.Fatal(err)
	}
	stale := newReq(Lease{IP: ips[0], MAC: "m0", State: StateBound, Expires: hour.Add(30 * time.Minute), Server: "a"})
	others := []*claimReq{
		newReq(Lease{IP: ips[1], MAC: "m1", State: StateBound, Expires: hour, Server: "a"}),
		newReq(Lease{IP: ips[0], MAC: "m2", State: StateOffered, Expires: hour, Server: "a"}), // shares ips[0]: next batch
		newReq(Lease{IP: ips[2], MAC: "m3", State: StateOffered, Expires: hour, Server: "a"}),
	}
	left := a.batch.round(ctx, append([]*claimReq{stale}, others...))
	if len(left) != 1 || left[0] != others[1] {
		t.Fatalf("left for the next batch: %d claims, want the one sharing a key", len(left))
	}
	if got := testutil.ToFloat64(a.batch.m.conflicts); got != 1 {
		t.Fatalf("conflicts %v, want 1", got)
	}
	for _, r := range []*claimReq{others[0], others[2]} {
		res := <-r.done
		if res.err != nil || res.l.IP != r.l.IP || res.l.MAC != r.l.MAC {
			t.Fatalf("claim of %s for %s in the same batch: %+v %v", r.l.IP, r.l.MAC, res.l, res.err)
		}
	}
	// The loser asked for less than b's binding holds: the read after the
	// conflict answers it, with the binding as held (never shortened).
	if res := <-stale.done; res.err != nil || res.l.State != StateBound || !res.l.Expires.Equal(longer) {
		t.Fatalf("stale renewal: %+v %v (want bound until %s: never shortened)", res.l, res.err, longer)
	}
	if got := testutil.ToFloat64(a.batch.m.readAnswers); got != 1 {
		t.Fatalf("answers by read %v, want 1", got)
	}
	if left = a.batch.round(ctx, left); len(left) != 0 {
		t.Fatalf("%d claims left after the second batch", len(left))
	}
	if res := <-others[1].done; !errors.Is(res.err, ErrInUse) {
		t.Fatalf("m2 asking for m0's address: %+v %v", res.l, res.err)
	}
	ls, err := b.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkUnique(t, ls)
	if len(ls) != 3 {
		t.Fatalf("leases %+v", ls)
	}
}

// A full queue refuses at once with ErrBusy (not ErrUnavailable: etcd is
// not known to be down), and a claim that waited longer than the timeout
// is refused when its batch comes.
func TestBatchQueueBounded(t *testing.T) {
	m, err := newBatchMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{prefix: "/t/", timeout: 50 * time.Millisecond}
	b := newBatcher(c, DefaultLeaseBatch, m) // not running: nothing is taken from the queue
	for i := 0; i < batchQueue; i++ {
		b.queue <- newReq(Lease{})
	}
	_, err = b.claim(context.Background(), Lease{IP: netip.MustParseAddr("10.9.0.1"), MAC: "m"})
	if !errors.Is(err, ErrBusy) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("claim on a full queue: %v", err)
	}
	old := newReq(Lease{IP: netip.MustParseAddr("10.9.0.2"), MAC: "m2"})
	old.queued = time.Now().Add(-time.Second)
	if left := b.round(context.Background(), []*claimReq{old}); len(left) != 0 {
		t.Fatalf("left %d", len(left))
	}
	if res := <-old.done; !errors.Is(res.err, ErrBusy) {
		t.Fatalf("claim that waited 1 s (timeout 50 ms): %v", res.err)
	}
	if got := testutil.ToFloat64(m.busy); got != 2 {
		t.Fatalf("busy %v, want 2", got)
	}
}
