package dhcp

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/status"
)

// fakeConn is an in-memory net.PacketConn: tests push datagrams in and
// read the server's replies out.
type fakeConn struct {
	in     chan []byte
	out    chan sent
	closed chan struct{}
	once   sync.Once
}

type sent struct {
	data []byte
	dst  net.Addr
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan []byte, 1024), out: make(chan sent, 1024), closed: make(chan struct{})}
}

func (c *fakeConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case d := <-c.in:
		return copy(b, d), &net.UDPAddr{IP: net.IPv4zero, Port: clientPort}, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *fakeConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.out <- sent{append([]byte(nil), b...), addr}
	return len(b), nil
}

func (c *fakeConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.UDPAddr{IP: net.IPv4zero, Port: serverPort} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (c *fakeConn) recv(t *testing.T) *dhcpv4.DHCPv4 { t.Helper(); return recvReply(t, c.out) }

func recvReply(t *testing.T, out <-chan sent) *dhcpv4.DHCPv4 {
	t.Helper()
	select {
	case s := <-out:
		r, err := dhcpv4.FromBytes(s.data)
		if err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no reply")
		return nil
	}
}

// counterValue reads a counter (prometheus/testutil would need another module).
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// gathered returns the value of the single-series metric name in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// funcRecorder calls f for every event.
type funcRecorder func(status.Event)

func (f funcRecorder) Record(e status.Event) { f(e) }

// startServe runs s.serve on a fake conn until the test ends.
func startServe(t *testing.T, s *Server, workers int) *fakeConn {
	t.Helper()
	c := newFakeConn()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx, []servedConn{{conn: c}}, workers) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestServeAnswersAndCounts(t *testing.T) {
	e := newEnv(t, testConfig{})
	c := startServe(t, e.srv, 2)
	c.in <- discover(t, "52:54:00:00:00:01", withArch(0)).ToBytes()
	if r := c.recv(t); r.MessageType() != dhcpv4.MessageTypeOffer || r.YourIPAddr.String() != "10.201.0.11" {
		t.Fatalf("reply: %s", r.Summary())
	}
	// The status event follows the reply; with 2 workers, wait for it to keep the order.
	waitFor(t, "the offer recorded", func() bool { return len(e.rec.All()) == 1 })
	c.in <- []byte("garbage")
	c.in <- discover(t, "02:00:00:00:00:01", withArch(0)).ToBytes() // unknown, no pool
	waitFor(t, "drop counters", func() bool {
		return counterValue(e.srv.m.dropped.WithLabelValues("malformed")) == 1 &&
			counterValue(e.srv.m.dropped.WithLabelValues("unknown_mac")) == 1
	})
	if got := counterValue(e.srv.m.received.WithLabelValues("DISCOVER")); got != 2 {
		t.Errorf("received DISCOVER = %v", got)
	}
	if got := counterValue(e.srv.m.sent.WithLabelValues("OFFER")); got != 1 {
		t.Errorf("sent OFFER = %v", got)
	}
	if v := gathered(t, e.reg, "wwserver_dhcp_leases_in_use"); v != 1 {
		t.Errorf("leases_in_use gauge = %v", v)
	}
	if evs := e.rec.All(); len(evs) != 2 || evs[0].Sent != "undionly.kpxe" || evs[1].Sent != "UNKNOWN_MAC" {
		t.Errorf("events = %+v", evs)
	}
}

// blockingProber holds every probe until release is closed.
type blockingProber struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blockingProber) inUse(string, netip.Addr) (bool, error) {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-b.release
	return false, nil
}

// TestServeQueueFullDrops: while probes can block the workers, packets
// wait in a bounded queue; what does not fit is dropped and counted.
func TestServeQueueFullDrops(t *testing.T) {
	e := newEnv(t, testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.110"})
	bp := &blockingProber{entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv, err := New(Options{Store: e.store, Log: quietLog(), Registerer: prometheus.NewRegistry(), QueueSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	srv.guard = &probeGuard{prober: bp, until: time.Now().Add(time.Hour), reason: "test"}
	srv.handlers[config.ModeReservation] = &reservationHandler{leases: srv.leases, m: srv.m, guard: srv.guard}
	srv.staleAfter = time.Hour // the queued packets wait as long as the test takes
	c := startServe(t, srv, 1)
	pkt := discover(t, "02:00:00:00:00:01").ToBytes()
	c.in <- pkt
	<-bp.entered // the only worker is now stuck in a probe
	for i := 0; i < 10; i++ {
		c.in <- pkt
	}
	// 2 fit in the queue; 8 are dropped.
	waitFor(t, "queue_full drops", func() bool {
		return counterValue(srv.m.dropped.WithLabelValues("queue_full")) == 8
	})
	close(bp.release)
	for i := 0; i < 3; i++ {
		c.recv(t)
	}
}

// TestServeDropsStalePackets: a queued packet that waited longer than
// staleAfter for a worker is dropped unanswered and counted.
func TestServeDropsStalePackets(t *testing.T) {
	e := newEnv(t, testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.110"})
	srv, err := New(Options{Store: e.store, Log: quietLog(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	srv.guard = &probeGuard{prober: &blockingProber{entered: make(chan struct{}, 8), release: make(chan struct{})},
		until: time.Now().Add(time.Hour), reason: "test"} // packets go through the queue
	srv.staleAfter = time.Nanosecond // every queued packet is too old
	c := startServe(t, srv, 1)
	for i := 0; i < 3; i++ {
		c.in <- discover(t, "02:00:00:00:00:02").ToBytes()
	}
	waitFor(t, "stale drops", func() bool {
		return counterValue(srv.m.dropped.WithLabelValues("stale")) == 3
	})
	if n := counterValue(srv.m.sentByType[dhcpv4.MessageTypeOffer]); n != 0 {
		t.Fatalf("%v OFFERs sent for stale packets", n)
	}
}

func TestServeRecoversPanics(t *testing.T) {
	e := newEnv(t, testConfig{})
	var mu sync.Mutex
	calls := 0
	srv, err := New(Options{Store: e.store, Log: quietLog(), Registerer: prometheus.NewRegistry(),
		Status: funcRecorder(func(status.Event) {
			mu.Lock()
			calls++
			n := calls
			mu.Unlock()
			if n == 1 {
				panic("boom")
			}
		})})
	if err != nil {
		t.Fatal(err)
	}
	c := startServe(t, srv, 1)
	pkt := discover(t, "52:54:00:00:00:01", withArch(0)).ToBytes()
	c.in <- pkt
	c.recv(t) // the reply goes out before the (panicking) status record
	waitFor(t, "panic counted", func() bool { return counterValue(srv.m.dropped.WithLabelValues("panic")) == 1 })
	c.in <- pkt // the worker survived
	c.recv(t)
}

func TestRestartKeepsLeases(t *testing.T) {
	state := t.TempDir()
	e := newEnv(t, testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.110"})
	run := func() (*Server, *fakeConn, func()) {
		srv, err := New(Options{Store: e.store, StateDir: state, Log: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		c := newFakeConn()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.serve(ctx, []servedConn{{conn: c}}, 2) }()
		return srv, c, func() { cancel(); <-done }
	}
	_, c, stop := run()
	c.in <- discover(t, "02:00:00:00:00:01").ToBytes()
	offer := c.recv(t)
	c.in <- request(t, "02:00:00:00:00:01", serverID("10.201.0.1"), requestedIP(offer.YourIPAddr.String())).ToBytes()
	if ack := c.recv(t); ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("no ACK: %s", ack.Summary())
	}
	stop()
	if _, err := os.Stat(filepath.Join(state, LeasesFile)); err != nil {
		t.Fatalf("no lease file after stop: %v", err)
	}
	srv2, c2, stop2 := run()
	defer stop2()
	if mac, _, ok := srv2.LeaseByIP(offer.YourIPAddr.String()); !ok || mac != "02:00:00:00:00:01" {
		t.Fatalf("lease lost across restart: %q %v", mac, ok)
	}
	c2.in <- discover(t, "02:00:00:00:00:02").ToBytes()
	if r := c2.recv(t); r.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatal("a restarted server handed a bound address to another MAC")
	}
	c2.in <- discover(t, "02:00:00:00:00:01").ToBytes()
	if r := c2.recv(t); !r.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("client got %s after restart, had %s", r.YourIPAddr, offer.YourIPAddr)
	}
}
