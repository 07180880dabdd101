package dhcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"

	"github.com/wwcluster/ww/server/config"
)

// iPXE runs IPv6 autoconfiguration beside DHCP and ends "Configuring
// (net0 ...)" only when both are done: without an IPv6 router it sends
// router solicitations with a doubling timeout and gives up after ~16 s.
// dhcp.answer_router_solicitations makes the server answer each
// solicitation on its interface with a router advertisement that announces
// nothing (router lifetime 0: not a default router; no prefixes; no
// DHCPv6), which ends iPXE's autoconfiguration at once and configures
// nothing on any host.
//
// "auto" (the default) answers only while no other router advertises on
// the interface: the responder's socket also receives the link's router
// advertisements. An RA that announces something (a lifetime, a prefix,
// M/O, any option but the source link-layer address) is another router's:
// from then on solicitations are left to it (a router answers them itself,
// so iPXE does not wait either) until it has been silent for routerHold.
// An RA that announces nothing, like ours, configures no host and does not
// count: another wwserver on the same link (etcd-shared state) must not
// silence this one, nor this one it. Our own RAs (looped back by the
// kernel) are recognised by their source, this socket's address, and
// their emptiness; an RA from that address that announces something is a
// router on this host (radvd) and counts. On start the responder sends one
// router solicitation, so a router present on the link answers at once
// instead of at its next periodic advertisement (up to 30 min by default).

// raMinInterval bounds the advertisements sent (RFC 4861 10: at most one
// per MIN_DELAY_BETWEEN_RAS of 3 s is for routers; iPXE's solicitations of
// one boot are further apart than this short bound, and a flood of
// solicitations gets at most 20 answers a second).
const raMinInterval = 50 * time.Millisecond

// defaultMaxRtrAdvInterval is RFC 4861's default MaxRtrAdvInterval (6.2.1),
// assumed for a router whose RA has no Advertisement Interval option.
const defaultMaxRtrAdvInterval = 600 * time.Second

// optAdvInterval is the Advertisement Interval option (RFC 6275 7.3): the
// router's MaxRtrAdvInterval in milliseconds.
const optAdvInterval = 7

// routerHold is how long after ra another router counts as present:
// three of its advertisement intervals (two lost advertisements are not
// silence), the interval being the RA's Advertisement Interval option or
// else RFC 4861's default of 600 s (so 30 min), and at least the router
// lifetime it announced (hosts keep it as default router that long).
func routerHold(ra *ndp.RouterAdvertisement) time.Duration {
	interval := defaultMaxRtrAdvInterval
	for _, o := range ra.Options {
		if r, ok := o.(*ndp.RawOption); ok && r.Type == optAdvInterval && len(r.Value) >= 6 {
			interval = time.Duration(binary.BigEndian.Uint32(r.Value[2:6])) * time.Millisecond
		}
	}
	return max(3*interval, ra.RouterLifetime)
}

// announcesNothing reports whether ra configures nothing on a host: no
// router lifetime, flags, parameters or options beyond the source
// link-layer address (and a nonce), like the RAs this server sends.
func announcesNothing(ra *ndp.RouterAdvertisement) bool {
	if ra.RouterLifetime != 0 || ra.ManagedConfiguration || ra.OtherConfiguration ||
		ra.MobileIPv6HomeAgent || ra.NeighborDiscoveryProxy ||
		ra.CurrentHopLimit != 0 || ra.ReachableTime != 0 || ra.RetransmitTimer != 0 {
		return false
	}
	for _, o := range ra.Options {
		switch o.(type) {
		case *ndp.LinkLayerAddress, *ndp.Nonce:
		default:
			return false
		}
	}
	return true
}

// raGate is auto mode's memory of other routers: one counts as present
// until `until`. It outlives a socket (the responder reopens it on errors).
type raGate struct {
	until time.Time
}

// router records another router's RA at now, to be kept for hold. It
// reports whether no router was present before.
func (g *raGate) router(now time.Time, hold time.Duration) (first bool) {
	first = !g.present(now)
	if u := now.Add(hold); u.After(g.until) {
		g.until = u
	}
	return first
}

// present reports whether another router counts as present at now.
func (g *raGate) present(now time.Time) bool { return now.Before(g.until) }

// raResponder answers router solicitations on one interface.
type raResponder struct {
	iface string
	mode  config.AnswerRS // auto or true
	log   *slog.Logger
	m     *metrics
	gate  raGate
	// quiet: answers are suppressed because another router is present
	// (auto only).
	quiet bool
}

// raWarnAfter is how long the responder may fail to open its socket before
// that is logged as a warning (a bridge without carrier: seconds).
const raWarnAfter = 30 * time.Second

// answerRouterSolicitations serves iface until ctx ends. A bridge gets its
// link-local address only once a port has carrier (and after duplicate
// address detection, ~2 s), so until iface can be listened on, it retries
// every 250 ms (a node booting meanwhile would otherwise wait up to a
// second more), and after raWarnAfter every second: the first failure is
// logged as information, a failure that lasts raWarnAfter (IPv6 off on
// the interface?) once as a warning.
func answerRouterSolicitations(ctx context.Context, iface string, mode config.AnswerRS, log *slog.Logger, m *metrics) {
	if mode != config.AnswerRSAlways {
		mode = config.AnswerRSAuto
	}
	r := &raResponder{iface: iface, mode: mode, log: log, m: m}
	var failingSince time.Time
	warned := false
	for {
		opened, err := r.serve(ctx)
		if ctx.Err() != nil {
			return
		}
		if opened { // it failed after working: a new episode
			failingSince, warned = time.Time{}, false
		}
		switch {
		case failingSince.IsZero():
			failingSince = time.Now()
			log.Info("dhcp: cannot answer router solicitations yet; retrying", "err", err)
		case !warned && time.Since(failingSince) >= raWarnAfter:
			warned = true
			log.Warn("dhcp: still cannot answer router solicitations; on a network without an IPv6 router iPXE waits ~16 s for one. Retrying every second",
				"interface", iface, "for", time.Since(failingSince).Round(time.Second), "err", err)
		}
		retry := 250 * time.Millisecond
		if time.Since(failingSince) >= raWarnAfter {
			retry = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// serve opens the NDP socket on r.iface and answers until ctx ends (nil)
// or the socket fails; opened reports whether it got as far as serving.
func (r *raResponder) serve(ctx context.Context) (opened bool, err error) {
	c, addr, ifi, err := r.open()
	if err != nil {
		return false, err
	}
	defer c.Close()
	return true, r.answer(ctx, c, addr, ifi)
}

// open opens and sets up the NDP socket on r.iface.
func (r *raResponder) open() (*ndp.Conn, netip.Addr, *net.Interface, error) {
	ifi, err := net.InterfaceByName(r.iface)
	if err != nil {
		return nil, netip.Addr{}, nil, fmt.Errorf("router solicitations: %w", err)
	}
	c, addr, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return nil, netip.Addr{}, nil, fmt.Errorf("router solicitations on %s (needs an IPv6 link-local address): %w", r.iface, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	f.Accept(ipv6.ICMPTypeRouterAdvertisement)
	fail := func(what string, err error) (*ndp.Conn, netip.Addr, *net.Interface, error) {
		c.Close()
		return nil, netip.Addr{}, nil, fmt.Errorf("router solicitations on %s: %s: %w", r.iface, what, err)
	}
	if err := c.SetICMPFilter(&f); err != nil {
		return fail("ICMPv6 filter", err)
	}
	if err := c.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
		return fail("hop limit control messages", err)
	}
	if err := c.JoinGroup(netip.MustParseAddr("ff02::2")); err != nil { // all-routers
		return fail("join ff02::2", err)
	}
	return c, addr, ifi, nil
}

// start logs the mode and, in auto mode, asks the link's routers to show
// themselves now (a router solicitation), so another router is known early.
func (r *raResponder) start(c *ndp.Conn, lla *ndp.LinkLayerAddress) {
	if r.mode != config.AnswerRSAuto {
		r.log.Info("dhcp: answering IPv6 router solicitations with an empty router advertisement, also while another IPv6 router advertises",
			"interface", r.iface, "answer_router_solicitations", r.mode)
		return
	}
	r.log.Info("dhcp: answering IPv6 router solicitations with an empty router advertisement while no other IPv6 router advertises",
		"interface", r.iface, "answer_router_solicitations", r.mode)
	rs := &ndp.RouterSolicitation{Options: []ndp.Option{lla}}
	if err := c.WriteTo(rs, nil, netip.MustParseAddr("ff02::2")); err != nil {
		r.log.Warn("dhcp: send router solicitation", "interface", r.iface, "err", err)
	} else {
		r.m.sent.WithLabelValues("ROUTER_SOLICITATION").Inc()
	}
}

// answer serves the open socket c (bound to addr on ifi) until ctx ends
// (nil) or c fails.
func (r *raResponder) answer(ctx context.Context, c *ndp.Conn, addr netip.Addr, ifi *net.Interface) error {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	lla := &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}
	// Lifetime 0, no prefix, M and O clear: "nothing here".
	ra := &ndp.RouterAdvertisement{Options: []ndp.Option{lla}}
	allNodes := netip.MustParseAddr("ff02::1")
	own := addr.WithZone("")
	r.start(c, lla)
	buf := make([]byte, max(ifi.MTU, 1500))
	var last time.Time
	for {
		// Wake up when another router's hold time ends (zero: none).
		if err := c.SetReadDeadline(r.gate.until); err != nil {
			return fmt.Errorf("router solicitations on %s: %w", r.iface, err)
		}
		n, cm, from, err := c.ReadRaw(buf)
		now := time.Now()
		r.resume(now)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			r.m.dropped.WithLabelValues("ndp_read_error").Inc()
			continue
		}
		msg, err := ndp.ParseMessage(buf[:n])
		if err != nil {
			r.m.dropped.WithLabelValues("ndp_malformed").Inc()
			continue
		}
		// RFC 4861 6.1: a router solicitation or advertisement with a hop
		// limit below 255 came from off the link.
		if cm == nil || cm.HopLimit != ndp.HopLimit {
			r.m.dropped.WithLabelValues("ndp_not_on_link").Inc()
			continue
		}
		from = from.WithZone("")
		switch msg := msg.(type) {
		case *ndp.RouterAdvertisement:
			r.advertisement(msg, from, own, now)
		case *ndp.RouterSolicitation:
			if from == own {
				continue // ours, or this host's kernel's
			}
			r.m.received.WithLabelValues("ROUTER_SOLICITATION").Inc()
			if r.quiet {
				r.m.dropped.WithLabelValues("ra_other_router").Inc()
				r.log.Debug("dhcp: router solicitation left to the other IPv6 router", "solicited_by", from)
				continue
			}
			if now.Sub(last) < raMinInterval {
				r.m.dropped.WithLabelValues("ra_rate_limited").Inc()
				continue
			}
			last = now
			if err := c.WriteTo(ra, nil, allNodes); err != nil {
				r.log.Warn("dhcp: send router advertisement", "interface", r.iface, "err", err)
				continue
			}
			r.m.sent.WithLabelValues("ROUTER_ADVERTISEMENT").Inc()
			r.log.Debug("dhcp: router advertisement sent", "solicited_by", from)
		}
	}
}

// advertisement handles an RA heard on the link at now.
func (r *raResponder) advertisement(ra *ndp.RouterAdvertisement, from, own netip.Addr, now time.Time) {
	if !from.IsLinkLocalUnicast() {
		r.m.dropped.WithLabelValues("ndp_not_on_link").Inc() // RFC 4861 6.1.2
		return
	}
	if announcesNothing(ra) {
		if from == own {
			return // our own, looped back
		}
		r.m.received.WithLabelValues("ROUTER_ADVERTISEMENT_EMPTY").Inc()
		r.log.Debug("dhcp: router advertisement that announces nothing (another wwserver?); still answering", "from", from)
		return
	}
	r.m.received.WithLabelValues("ROUTER_ADVERTISEMENT").Inc()
	hold := routerHold(ra)
	if !r.gate.router(now, hold) {
		return
	}
	r.m.otherRouter.Set(1)
	if r.mode == config.AnswerRSAuto {
		r.quiet = true
		r.log.Info("dhcp: another IPv6 router advertises on the interface; leaving router solicitations to it",
			"interface", r.iface, "router", from, "router_lifetime", ra.RouterLifetime, "silent_for_before_answering_again", hold)
	} else {
		r.log.Warn("dhcp: another IPv6 router advertises on the interface; answering router solicitations anyway (answer_router_solicitations = true; \"auto\" would leave them to it)",
			"interface", r.iface, "router", from, "router_lifetime", ra.RouterLifetime)
	}
}

// resume ends a quiet time once the other routers have been silent for
// their hold time.
func (r *raResponder) resume(now time.Time) {
	if r.gate.until.IsZero() || r.gate.present(now) {
		return
	}
	r.gate.until = time.Time{}
	r.m.otherRouter.Set(0)
	if r.quiet {
		r.quiet = false
		r.log.Info("dhcp: no other IPv6 router advertised for its hold time; answering router solicitations again", "interface", r.iface)
	}
}
