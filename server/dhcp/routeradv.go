package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// iPXE runs IPv6 autoconfiguration beside DHCP and ends "Configuring
// (net0 ...)" only when both are done: without an IPv6 router it sends
// router solicitations with a doubling timeout and gives up after ~16 s.
// With dhcp.answer_router_solicitations the server answers each
// solicitation on its interface with a router advertisement that announces
// nothing (router lifetime 0: not a default router; no prefixes; no
// DHCPv6), which ends iPXE's autoconfiguration at once and configures
// nothing on any host.

// raMinInterval bounds the advertisements sent (RFC 4861 10: at most one
// per MIN_DELAY_BETWEEN_RAS of 3 s is for routers; iPXE's solicitations of
// one boot are further apart than this short bound, and a flood of
// solicitations gets at most 20 answers a second).
const raMinInterval = 50 * time.Millisecond

// answerRouterSolicitations serves iface until ctx ends. A bridge gets its
// link-local address only once a port has carrier, so until iface can be
// listened on, it retries every second (logging the first failure).
func answerRouterSolicitations(ctx context.Context, iface string, log *slog.Logger, m *metrics) {
	logged := false
	for {
		err := serveRouterSolicitations(ctx, iface, log, m)
		if ctx.Err() != nil {
			return
		}
		if !logged {
			log.Warn("dhcp: cannot answer router solicitations yet; retrying every second", "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func serveRouterSolicitations(ctx context.Context, iface string, log *slog.Logger, m *metrics) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("router solicitations: %w", err)
	}
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return fmt.Errorf("router solicitations on %s (needs an IPv6 link-local address): %w", iface, err)
	}
	defer c.Close()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	if err := c.SetICMPFilter(&f); err != nil {
		return fmt.Errorf("router solicitations on %s: %w", iface, err)
	}
	if err := c.JoinGroup(netip.MustParseAddr("ff02::2")); err != nil { // all-routers
		return fmt.Errorf("router solicitations on %s: join ff02::2: %w", iface, err)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	ra := &ndp.RouterAdvertisement{
		// Lifetime 0, no prefix, M and O clear: "nothing here".
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}},
	}
	allNodes := netip.MustParseAddr("ff02::1")
	log.Info("dhcp: answering IPv6 router solicitations with an empty router advertisement", "interface", iface)
	var last time.Time
	for {
		msg, _, from, err := c.ReadFrom()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			m.dropped.WithLabelValues("ndp_read_error").Inc()
			continue // a malformed NDP message
		}
		if _, ok := msg.(*ndp.RouterSolicitation); !ok {
			continue
		}
		if time.Since(last) < raMinInterval {
			m.dropped.WithLabelValues("ra_rate_limited").Inc()
			continue
		}
		last = time.Now()
		if err := c.WriteTo(ra, nil, allNodes); err != nil {
			log.Warn("dhcp: send router advertisement", "interface", iface, "err", err)
			continue
		}
		m.sent.WithLabelValues("ROUTER_ADVERTISEMENT").Inc()
		log.Debug("dhcp: router advertisement sent", "solicited_by", from)
	}
}
