package netwait

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var nsCounter atomic.Int32

// testNS is a private network namespace with a veth pair: the host end
// (up, no address, no IPv6 link-local) stays in the test's namespace, the
// other end (down) is moved into the private one.
type testNS struct {
	name   string
	handle netns.NsHandle
	nl     *netlink.Handle
	peer   string // interface name inside the namespace
	mac    net.HardwareAddr
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newTestNS(t *testing.T) *testNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netlink namespace tests need root (ip netns add, veth)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netlink namespace tests need iproute2's ip command")
	}
	n := nsCounter.Add(1)
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, n)
	ns := &testNS{
		name: "wwnw" + id,
		peer: "wwb" + id,
		mac:  net.HardwareAddr{0x02, 0x77, 0x77, byte(n), byte(os.Getpid() >> 8), byte(os.Getpid())},
	}
	host := "wwa" + id
	ipCmd(t, "netns", "add", ns.name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns.name).Run() })
	ipCmd(t, "link", "add", host, "type", "veth", "peer", "name", ns.peer)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	ipCmd(t, "link", "set", ns.peer, "netns", ns.name)
	ipCmd(t, "-n", ns.name, "link", "set", ns.peer, "address", ns.mac.String())
	ipCmd(t, "link", "set", host, "addrgenmode", "none")
	ipCmd(t, "link", "set", host, "up")
	h, err := netns.GetFromName(ns.name)
	if err != nil {
		t.Fatal(err)
	}
	ns.handle = h
	t.Cleanup(func() { h.Close() })
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	ns.nl = nl
	t.Cleanup(nl.Close)
	return ns
}

type waitResult struct {
	res Result
	err error
}

// startWait runs Wait in a goroutine; statuses are delivered on the
// returned channel.
func startWait(t *testing.T, ns *testNS, target Target, timeout time.Duration, extra func(*Options)) (<-chan waitResult, <-chan string) {
	t.Helper()
	status := make(chan string, 100)
	done := make(chan waitResult, 1)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	o := Options{Namespace: &ns.handle, OnStatus: func(s string) { status <- s }}
	if extra != nil {
		extra(&o)
	}
	go func() {
		r, err := Wait(ctx, target, o)
		done <- waitResult{r, err}
	}()
	return done, status
}

func awaitStatus(t *testing.T, status <-chan string, want string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case s := <-status:
			if strings.Contains(s, want) {
				return
			}
		case <-timeout:
			t.Fatalf("no status containing %q", want)
		}
	}
}

func awaitResult(t *testing.T, done <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("Wait did not return")
	}
	return waitResult{}
}

func TestWaitReturnsWhenLinkComesUpLate(t *testing.T) {
	ns := newTestNS(t)
	done, status := startWait(t, ns, Target{HWAddr: ns.mac}, 30*time.Second, nil)
	awaitStatus(t, status, ns.peer+": link down")
	select {
	case r := <-done:
		t.Fatalf("Wait returned while the link is down: %+v", r)
	default:
	}
	// bring it up from another goroutine
	upErr := make(chan error, 1)
	go func() {
		l, err := ns.nl.LinkByName(ns.peer)
		if err == nil {
			err = ns.nl.LinkSetUp(l)
		}
		upErr <- err
	}()
	if err := <-upErr; err != nil {
		t.Fatal(err)
	}
	r := awaitResult(t, done)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.res.Name != ns.peer || len(r.res.Configured) != 0 {
		t.Fatalf("result %+v", r.res)
	}
}

func TestWaitConfiguresAddressAndRoute(t *testing.T) {
	ns := newTestNS(t)
	addr := &net.IPNet{IP: net.IPv4(10, 200, 0, 2).To4(), Mask: net.CIDRMask(24, 32)}
	gw := net.IPv4(10, 200, 0, 1).To4()
	done, _ := startWait(t, ns, Target{HWAddr: ns.mac, Addr: addr, Gateway: gw, Configure: true}, 30*time.Second, nil)
	r := awaitResult(t, done)
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, c := range []string{"up", "addr", "route"} {
		if !slices.Contains(r.res.Configured, c) {
			t.Errorf("Configured %v lacks %q", r.res.Configured, c)
		}
	}
	l, err := ns.nl.LinkByName(ns.peer)
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		t.Fatal("link not up")
	}
	addrs, err := ns.nl.AddrList(l, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.200.0.2/24" {
		t.Fatalf("addresses %v %v", addrs, err)
	}
	routes, err := ns.nl.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rt := range routes {
		if (rt.Dst == nil || rt.Dst.String() == "0.0.0.0/0") && rt.Gw.Equal(gw) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no default route via %s: %v", gw, routes)
	}
	// Configure also brings the loopback up
	if lo, err := ns.nl.LinkByName("lo"); err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("lo not up: %v", err)
	}
	// a second Wait finds everything in place and changes nothing
	done, _ = startWait(t, ns, Target{HWAddr: ns.mac, Addr: addr, Gateway: gw, Configure: true}, 30*time.Second, nil)
	if r := awaitResult(t, done); r.err != nil || len(r.res.Configured) != 0 {
		t.Fatalf("second wait: %+v", r)
	}
}

func TestWaitForAddressFromElsewhere(t *testing.T) {
	ns := newTestNS(t)
	l, err := ns.nl.LinkByName(ns.peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.nl.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	addr := &net.IPNet{IP: net.IPv4(10, 200, 1, 5).To4(), Mask: net.CIDRMask(24, 32)}
	done, status := startWait(t, ns, Target{HWAddr: ns.mac, Addr: addr}, 30*time.Second, nil)
	awaitStatus(t, status, "waiting for address 10.200.1.5")
	select {
	case r := <-done:
		t.Fatalf("returned without the address: %+v", r)
	default:
	}
	go ns.nl.AddrAdd(l, &netlink.Addr{IPNet: addr})
	if r := awaitResult(t, done); r.err != nil || r.res.Name != ns.peer {
		t.Fatalf("%+v", r)
	}
}

func TestWaitLoadsDriversAndSeesNewLink(t *testing.T) {
	ns := newTestNS(t)
	// the interface does not exist yet: "loading the driver" creates it
	newMAC := net.HardwareAddr{0x02, 0x88, 0x88, 0, 0, byte(nsCounter.Load())}
	name := "wwc" + strings.TrimPrefix(ns.name, "wwnw")
	var calls atomic.Int32
	done, status := startWait(t, ns, Target{HWAddr: newMAC, Configure: true}, 30*time.Second, func(o *Options) {
		o.LoadDrivers = func(ctx context.Context) error {
			calls.Add(1)
			return nil // nothing appears yet
		}
	})
	awaitStatus(t, status, "no interface with hwaddr "+newMAC.String())
	ipCmd(t, "-n", ns.name, "link", "add", name, "address", newMAC.String(), "type", "veth", "peer", "name", name+"p")
	ipCmd(t, "-n", ns.name, "link", "set", name+"p", "up")
	r := awaitResult(t, done)
	if r.err != nil || r.res.Name != name {
		t.Fatalf("%+v", r)
	}
	if calls.Load() != 1 {
		t.Fatalf("LoadDrivers called %d times, want 1", calls.Load())
	}
}

func TestWaitTimesOut(t *testing.T) {
	ns := newTestNS(t)
	missing := net.HardwareAddr{0x02, 0x99, 0, 0, 0, 1}
	start := time.Now()
	done, _ := startWait(t, ns, Target{HWAddr: missing}, 300*time.Millisecond, nil)
	r := awaitResult(t, done)
	if r.err == nil || !strings.Contains(r.err.Error(), "no interface with hwaddr 02:99:00:00:00:01") || !strings.Contains(r.err.Error(), "deadline") {
		t.Fatalf("err %v", r.err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("timeout not honoured")
	}
	if _, err := Wait(context.Background(), Target{}, Options{}); err == nil {
		t.Fatal("empty target accepted")
	}
}

// recordHandler sends every log record to a channel.
type recordHandler struct{ ch chan<- slog.Record }

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.ch <- r.Clone():
	default: // a full channel drops records rather than block Wait
	}
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

// TestWaitLogsErrorAndKeepsWaiting: the NIC with the node's MAC is missing
// (no driver): after ErrorAfter an ERROR names the MAC and the interfaces
// there are; Wait keeps waiting and succeeds once the interface appears.
func TestWaitLogsErrorAndKeepsWaiting(t *testing.T) {
	ns := newTestNS(t)
	missing := net.HardwareAddr{0x02, 0x99, 0x77, 0, byte(nsCounter.Load()), byte(os.Getpid())}
	records := make(chan slog.Record, 100)
	done, _ := startWait(t, ns, Target{HWAddr: missing, Configure: true}, 30*time.Second, func(o *Options) {
		o.Logger = slog.New(recordHandler{records})
		o.ErrorAfter = 100 * time.Millisecond
	})
	var rec slog.Record
	timeout := time.After(20 * time.Second)
	for rec.Level != slog.LevelError {
		select {
		case rec = <-records:
		case <-timeout:
			t.Fatal("no ERROR record")
		}
	}
	attrs := map[string]string{}
	rec.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.String()
		return true
	})
	if attrs["hwaddr"] != missing.String() {
		t.Errorf("ERROR hwaddr %q, want %s (record %v)", attrs["hwaddr"], missing, attrs)
	}
	if !strings.Contains(attrs["status"], "no interface with hwaddr") {
		t.Errorf("ERROR status %q", attrs["status"])
	}
	for _, want := range []string{ns.peer + " " + ns.mac.String() + " down", "lo "} {
		if !strings.Contains(attrs["interfaces"], want) {
			t.Errorf("ERROR interfaces %q lack %q", attrs["interfaces"], want)
		}
	}
	select {
	case r := <-done:
		t.Fatalf("Wait returned after the ERROR: %+v", r)
	default:
	}
	// the "driver" arrives: the interface gets the node's MAC
	ipCmd(t, "-n", ns.name, "link", "set", ns.peer, "address", missing.String())
	if r := awaitResult(t, done); r.err != nil || r.res.Name != ns.peer {
		t.Fatalf("after the interface appeared: %+v", r)
	}
}

// TestHasCarrier: the carrier counts from IFF_LOWER_UP on, without waiting
// for linkwatch's IFF_RUNNING / operstate UP (up to 1 s later).
func TestHasCarrier(t *testing.T) {
	for _, c := range []struct {
		flags uint32
		oper  netlink.LinkOperState
		want  bool
	}{
		{unix.IFF_UP, netlink.OperDown, false},
		{unix.IFF_UP, netlink.OperUnknown, false},
		{unix.IFF_UP | unix.IFF_LOWER_UP, netlink.OperDown, true},
		{unix.IFF_UP | unix.IFF_RUNNING, netlink.OperDown, true},
		{unix.IFF_UP, netlink.OperUp, true},
	} {
		if got := hasCarrier(&netlink.LinkAttrs{RawFlags: c.flags, OperState: c.oper}); got != c.want {
			t.Errorf("flags %#x oper %v: carrier %v, want %v", c.flags, c.oper, got, c.want)
		}
	}
}

// TestWaitNoCarrierUntilPeerUp: a link that is up but whose veth peer is
// down has no carrier (no IFF_LOWER_UP): Wait keeps waiting until the peer
// comes up.
func TestWaitNoCarrierUntilPeerUp(t *testing.T) {
	ns := newTestNS(t)
	host := "wwa" + strings.TrimPrefix(ns.peer, "wwb")
	ipCmd(t, "link", "set", host, "down")
	done, status := startWait(t, ns, Target{HWAddr: ns.mac, Configure: true}, 30*time.Second, nil)
	awaitStatus(t, status, ns.peer+": no carrier")
	select {
	case r := <-done:
		t.Fatalf("Wait returned without a carrier: %+v", r)
	default:
	}
	ipCmd(t, "link", "set", host, "up")
	r := awaitResult(t, done)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.res.Name != ns.peer {
		t.Fatalf("result %+v", r.res)
	}
}
