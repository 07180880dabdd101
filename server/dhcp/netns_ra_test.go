package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/ipv6"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/dhcp/netnstest"
)

// Router solicitations in a namespace pair: the client end plays iPXE
// (router solicitations) and, when a test says so, an IPv6 router (router
// advertisements with a lifetime). The client's socket is opened on a
// thread in the client namespace and used from the test goroutine.

// raClient is an NDP socket in the client namespace.
type raClient struct {
	t    *testing.T
	c    *ndp.Conn
	addr netip.Addr
	lla  ndp.Option
}

func newRAClient(t *testing.T, p *netnstest.Pair) *raClient {
	t.Helper()
	var (
		c    *ndp.Conn
		addr netip.Addr
		ifi  *net.Interface
		err  error
	)
	<-p.InClient(t, func() {
		if ifi, err = net.InterfaceByName(p.ClientIf); err == nil {
			c, addr, err = ndp.Listen(ifi, ndp.LinkLocal)
		}
	})
	if err != nil {
		t.Fatalf("NDP socket in the client namespace: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterAdvertisement)
	if err := c.SetICMPFilter(&f); err != nil {
		t.Fatal(err)
	}
	return &raClient{t: t, c: c, addr: addr, lla: &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}
}

// solicit sends a router solicitation every 100 ms (as iPXE does, at a
// faster pace) until a router advertisement arrives, for at most timeout;
// it returns the advertisement and its source (nil on none). What was
// queued before is dropped first.
func (rc *raClient) solicit(timeout time.Duration) (*ndp.RouterAdvertisement, netip.Addr) {
	rc.t.Helper()
	rc.drain() // answers to earlier solicitations
	rs := &ndp.RouterSolicitation{Options: []ndp.Option{rc.lla}}
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		if err := rc.c.WriteTo(rs, nil, netip.MustParseAddr("ff02::2")); err != nil {
			rc.t.Fatalf("send router solicitation: %v", err)
		}
		next := time.Now().Add(100 * time.Millisecond)
		if next.After(end) {
			next = end
		}
		if ra, from := rc.readRA(next); ra != nil {
			return ra, from
		}
	}
	return nil, netip.Addr{}
}

// readRA returns the next router advertisement arriving before deadline.
func (rc *raClient) readRA(deadline time.Time) (*ndp.RouterAdvertisement, netip.Addr) {
	rc.t.Helper()
	if err := rc.c.SetReadDeadline(deadline); err != nil {
		rc.t.Fatal(err)
	}
	for {
		msg, _, from, err := rc.c.ReadFrom()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, netip.Addr{}
		}
		if err != nil {
			rc.t.Fatalf("read: %v", err)
		}
		if ra, ok := msg.(*ndp.RouterAdvertisement); ok {
			return ra, from
		}
	}
}

// drain drops the router advertisements queued on the socket (answers to
// earlier solicitations).
func (rc *raClient) drain() {
	rc.t.Helper()
	for ra, _ := rc.readRA(time.Now()); ra != nil; ra, _ = rc.readRA(time.Now()) {
	}
}

// advertise sends ra to all nodes, as a router does.
func (rc *raClient) advertise(ra *ndp.RouterAdvertisement) {
	rc.t.Helper()
	ra.Options = append(ra.Options, rc.lla)
	if err := rc.c.WriteTo(ra, nil, netip.MustParseAddr("ff02::1")); err != nil {
		rc.t.Fatalf("send router advertisement: %v", err)
	}
}

// startResponder runs the router-solicitation responder on the server end
// (its socket opened on a thread in the server namespace) until the test
// ends, and returns its metrics.
func startResponder(t *testing.T, p *netnstest.Pair, mode config.AnswerRS) *metrics {
	t.Helper()
	m, err := newMetrics(prometheus.NewRegistry(), func() int { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := p.InServer(t, func() { answerRouterSolicitations(ctx, p.ServerIf, mode, quietLog(), m) })
	t.Cleanup(func() { cancel(); <-done })
	return m
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}

// newRAPair is a namespace pair whose client kernel sends no router
// solicitations of its own (they would be answered too and blur counts),
// with usable link-local addresses on both ends.
func newRAPair(t *testing.T) *netnstest.Pair {
	t.Helper()
	netnstest.Require(t)
	p := netnstest.New(t, knownMAC)
	cmd := p.ClientCommand(context.Background(), "sysctl", "-q", "-w", "net.ipv6.conf."+p.ClientIf+".router_solicitations=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sysctl: %v: %s", err, out)
	}
	waitLinkLocal(t, p)
	return p
}

// solicitOK solicits for at most 10 s and returns the answer (for checkEmptyRA).
func solicitOK(cli *raClient) (*testing.T, *ndp.RouterAdvertisement, netip.Addr) {
	ra, from := cli.solicit(10 * time.Second)
	return cli.t, ra, from
}

// checkEmptyRA fails the test unless ra, from the server, announces nothing.
func checkEmptyRA(t *testing.T, ra *ndp.RouterAdvertisement, from netip.Addr) {
	t.Helper()
	if ra == nil {
		t.Fatal("no router advertisement")
	}
	if !from.IsLinkLocalUnicast() || !announcesNothing(ra) {
		t.Errorf("router advertisement from %s announces something: %+v", from, ra)
	}
}

// TestNetnsRouterAdvertAuto: in auto mode (a) a solicitation gets our
// empty RA while no other router is on the link (and our own RAs, which
// the kernel loops back to the socket, are not taken for another router's);
// (b) once another router advertises (lifetime 1800 s), solicitations are
// left to it: none is answered, and the metrics count the RA, the
// suppressed answers and the router's presence.
func TestNetnsRouterAdvertAuto(t *testing.T) {
	p := newRAPair(t)
	m := startResponder(t, p, config.AnswerRSAuto)
	cli := newRAClient(t, p)
	sentRA := m.sent.WithLabelValues("ROUTER_ADVERTISEMENT")
	routerRA := m.received.WithLabelValues("ROUTER_ADVERTISEMENT")
	emptyRA := m.received.WithLabelValues("ROUTER_ADVERTISEMENT_EMPTY")
	suppressed := m.dropped.WithLabelValues("ra_other_router")

	// (a) Answered; twice, so the second solicitation was read after the
	// first answer's looped-back copy.
	for i := range 2 {
		ra, from := cli.solicit(10 * time.Second)
		checkEmptyRA(t, ra, from)
		waitFor(t, "answers counted", func() bool { return counterValue(sentRA) >= float64(i+1) })
	}
	if v := counterValue(m.sent.WithLabelValues("ROUTER_SOLICITATION")); v != 1 {
		t.Errorf("router solicitations sent at start = %v, want 1", v)
	}
	if r, e, g := counterValue(routerRA), counterValue(emptyRA), gaugeValue(m.otherRouter); r != 0 || e != 0 || g != 0 {
		t.Errorf("own RAs taken for another router's: received ROUTER_ADVERTISEMENT %v, _EMPTY %v, other_router %v", r, e, g)
	}

	// (b) Another router.
	cli.advertise(&ndp.RouterAdvertisement{CurrentHopLimit: 64, RouterLifetime: 1800 * time.Second})
	waitFor(t, "the other router's RA counted", func() bool { return counterValue(routerRA) == 1 })
	if g := gaugeValue(m.otherRouter); g != 1 {
		t.Errorf("wwserver_dhcp_ipv6_other_router = %v, want 1", g)
	}
	before := counterValue(sentRA)
	rs := &ndp.RouterSolicitation{Options: []ndp.Option{cli.lla}}
	for i := range 3 {
		if err := cli.c.WriteTo(rs, nil, netip.MustParseAddr("ff02::2")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "solicitation "+strconv.Itoa(i+1)+" left to the other router", func() bool {
			return counterValue(suppressed) >= float64(i+1)
		})
	}
	if v := counterValue(sentRA); v != before {
		t.Errorf("answered %v solicitations while another router advertises", v-before)
	}
	// Nothing from the server reached the client meanwhile either (only
	// what is queued now is read: the server has decided all three).
	for {
		ra, from := cli.readRA(time.Now())
		if ra == nil {
			break
		}
		t.Errorf("router advertisement from %s while another router advertises: %+v", from, ra)
	}
}

// TestNetnsRouterAdvertResume: after another router has been silent for
// its hold time (here its router lifetime of 1 s, its advertised interval
// being 100 ms), auto mode answers again.
func TestNetnsRouterAdvertResume(t *testing.T) {
	p := newRAPair(t)
	m := startResponder(t, p, config.AnswerRSAuto)
	cli := newRAClient(t, p)
	checkEmptyRA(solicitOK(cli))
	cli.advertise(&ndp.RouterAdvertisement{RouterLifetime: time.Second, Options: []ndp.Option{advInterval(100 * time.Millisecond)}})
	waitFor(t, "the other router's RA counted", func() bool {
		return counterValue(m.received.WithLabelValues("ROUTER_ADVERTISEMENT")) == 1
	})
	// The responder wakes at the end of the hold time by itself.
	waitFor(t, "the other router to count as gone", func() bool { return gaugeValue(m.otherRouter) == 0 })
	before := counterValue(m.sent.WithLabelValues("ROUTER_ADVERTISEMENT"))
	checkEmptyRA(solicitOK(cli))
	waitFor(t, "an answer counted", func() bool {
		return counterValue(m.sent.WithLabelValues("ROUTER_ADVERTISEMENT")) > before
	})
}

// TestNetnsRouterAdvertAlways: with true, solicitations are answered also
// while another router advertises (which is still counted).
func TestNetnsRouterAdvertAlways(t *testing.T) {
	p := newRAPair(t)
	m := startResponder(t, p, config.AnswerRSAlways)
	cli := newRAClient(t, p)
	checkEmptyRA(solicitOK(cli))
	if v := counterValue(m.sent.WithLabelValues("ROUTER_SOLICITATION")); v != 0 {
		t.Errorf("sent %v router solicitations with true, want none", v)
	}
	cli.advertise(&ndp.RouterAdvertisement{RouterLifetime: 1800 * time.Second})
	waitFor(t, "the other router's RA counted", func() bool {
		return counterValue(m.received.WithLabelValues("ROUTER_ADVERTISEMENT")) == 1
	})
	before := counterValue(m.sent.WithLabelValues("ROUTER_ADVERTISEMENT"))
	checkEmptyRA(solicitOK(cli))
	waitFor(t, "an answer counted", func() bool {
		return counterValue(m.sent.WithLabelValues("ROUTER_ADVERTISEMENT")) > before
	})
	if v := counterValue(m.dropped.WithLabelValues("ra_other_router")); v != 0 {
		t.Errorf("%v answers suppressed with true", v)
	}
}

// TestNetnsRouterSolicitation: the setting end to end, through
// wwserver.toml and a server process in the server namespace: by default
// (auto) and with true (also the old boolean) a solicitation gets the empty
// RA; with false (c) none is answered.
func TestNetnsRouterSolicitation(t *testing.T) {
	p := newRAPair(t)
	cli := newRAClient(t, p)
	// The cases that must not answer come first: an answer to an earlier
	// case's solicitation cannot be taken for theirs.
	for _, c := range []struct {
		toml   string // answer_router_solicitations; "omit": the default
		answer bool
	}{
		{`"false"`, false}, {"false", false}, {"omit", true}, {`"auto"`, true}, {`"true"`, true}, {"true", true},
	} {
		root := t.TempDir()
		writeTree(t, root, testConfig{iface: p.ServerIf, listen: ":67", answerRS: c.toml})
		srv := startServerProcess(t, p, root)
		// false: no answer in 2 s of solicitations every 100 ms (the
		// others answer within ~0.1 s of the responder's start).
		timeout := 10 * time.Second
		if !c.answer {
			timeout = 2 * time.Second
		}
		ra, from := cli.solicit(timeout)
		_ = srv.Process.Kill()
		_ = srv.Wait()
		if !c.answer {
			if ra != nil {
				t.Errorf("answer_router_solicitations = %s: answered: %+v", c.toml, ra)
			}
			continue
		}
		if ra == nil {
			t.Errorf("answer_router_solicitations = %s: no router advertisement", c.toml)
			continue
		}
		checkEmptyRA(t, ra, from)
	}
}

// TestNetnsRouterAdvertSameHost: an RA that announces something from the
// responder's own address (radvd on the wwserver host) is another
// router's, although our own RAs come from that address too.
func TestNetnsRouterAdvertSameHost(t *testing.T) {
	p := newRAPair(t)
	m := startResponder(t, p, config.AnswerRSAuto)
	cli := newRAClient(t, p)
	checkEmptyRA(solicitOK(cli)) // the responder is up
	var (
		c   *ndp.Conn
		ifi *net.Interface
		err error
	)
	<-p.InServer(t, func() {
		if ifi, err = net.InterfaceByName(p.ServerIf); err == nil {
			c, _, err = ndp.Listen(ifi, ndp.LinkLocal)
		}
	})
	if err != nil {
		t.Fatalf("second NDP socket in the server namespace: %v", err)
	}
	defer c.Close()
	ra := &ndp.RouterAdvertisement{RouterLifetime: 1800 * time.Second,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}}
	if err := c.WriteTo(ra, nil, netip.MustParseAddr("ff02::1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the same-host router's RA counted", func() bool {
		return counterValue(m.received.WithLabelValues("ROUTER_ADVERTISEMENT")) == 1 && gaugeValue(m.otherRouter) == 1
	})
}
