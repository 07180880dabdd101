package stage2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/wwcluster/ww/wwclient/netwait"
)

// NetOptions say how to bring the boot NIC up in stage 2.
type NetOptions struct {
	HWAddr net.HardwareAddr // the NIC that booted (wwid=)
	// Static, when set, is the address wwclient.toml gives the NIC (from
	// nodes.toml); else the address comes from DHCP.
	Static  *net.IPNet
	Gateway net.IP
	// LoadDrivers is called once when no interface has HWAddr (kmod).
	LoadDrivers func(ctx context.Context) error
	// LinkTimeout bounds the wait for the interface and its carrier
	// (default 60 s); DHCPTimeout the DHCP exchange (default 30 s).
	LinkTimeout, DHCPTimeout time.Duration
	Log                      *slog.Logger
}

// Net is the NIC as Up left it; Down undoes what Up did.
type Net struct {
	Name       string
	Addr       *net.IPNet // the address in use
	Source     string     // "static", "dhcp" or "present" (already configured)
	configured []string   // what netwait did: "up", "addr", "route"
	gateway    net.IP
	index      int
	log        *slog.Logger
}

// Up waits for the NIC with o.HWAddr (loading its driver when missing),
// brings it up and gives it an address: the static one, else one from
// DHCPv4 (github.com/insomniacslk/dhcp nclient4), unless it has one
// already. Addresses and routes are set with netlink.
func Up(ctx context.Context, o NetOptions) (*Net, error) {
	if len(o.HWAddr) == 0 {
		return nil, errors.New("network: no boot MAC (wwid=)")
	}
	if o.LinkTimeout <= 0 {
		o.LinkTimeout = 60 * time.Second
	}
	if o.DHCPTimeout <= 0 {
		o.DHCPTimeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	wo := netwait.Options{LoadDrivers: o.LoadDrivers, Logger: o.Log, ErrorAfter: -1}
	lctx, cancel := context.WithTimeout(ctx, o.LinkTimeout)
	defer cancel()
	t := netwait.Target{HWAddr: o.HWAddr, Configure: true, Addr: o.Static, Gateway: o.Gateway}
	if o.Static != nil {
		res, err := netwait.Wait(lctx, t, wo)
		if err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
		return &Net{Name: res.Name, index: res.Index, Addr: o.Static, Source: "static", configured: res.Configured,
			gateway: o.Gateway, log: o.Log}, nil
	}
	res, err := netwait.Wait(lctx, t, wo) // up, with carrier
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	n := &Net{Name: res.Name, index: res.Index, configured: res.Configured, log: o.Log}
	if a := presentAddr(res.Index); a != nil {
		n.Addr, n.Source = a, "present"
		return n, nil
	}
	addr, gw, err := dhcp(ctx, res.Name, o.HWAddr, o.DHCPTimeout, o.Log)
	if err != nil {
		n.Down()
		return nil, fmt.Errorf("network: DHCP on %s: %w", res.Name, err)
	}
	t.Addr, t.Gateway = addr, gw
	lctx2, cancel2 := context.WithTimeout(ctx, o.LinkTimeout)
	defer cancel2()
	res2, err := netwait.Wait(lctx2, t, wo)
	n.configured = append(n.configured, res2.Configured...)
	if err != nil {
		n.Down()
		return nil, fmt.Errorf("network: %w", err)
	}
	n.Addr, n.Source, n.gateway = addr, "dhcp", gw
	return n, nil
}

// presentAddr is a global IPv4 address the interface has, if any.
func presentAddr(index int) *net.IPNet {
	link, err := netlink.LinkByIndex(index)
	if err != nil {
		return nil
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if a.IPNet != nil && a.IP.IsGlobalUnicast() {
			return a.IPNet
		}
	}
	return nil
}

// dhcp runs DISCOVER/OFFER/REQUEST/ACK on the interface and returns the
// address (with the offered netmask) and router.
func dhcp(ctx context.Context, ifname string, mac net.HardwareAddr, timeout time.Duration, log *slog.Logger) (*net.IPNet, net.IP, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := nclient4.New(ifname, nclient4.WithHWAddr(mac), nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	var lastErr error
	for ctx.Err() == nil {
		lease, err := c.Request(ctx, dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter))
		if err != nil {
			lastErr = err
			log.Warn("DHCP", "interface", ifname, "err", err)
			t := time.NewTimer(time.Second) // a NAK comes back at once: do not spin
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		ack := lease.ACK
		mask := ack.SubnetMask()
		if mask == nil {
			mask = ack.YourIPAddr.DefaultMask()
		}
		var gw net.IP
		if rs := ack.Router(); len(rs) > 0 {
			gw = rs[0]
		}
		log.Info("DHCP lease", "interface", ifname, "addr", ack.YourIPAddr, "mask", net.IP(mask).String(), "router", gw, "server", ack.ServerIPAddr)
		return &net.IPNet{IP: ack.YourIPAddr.To4(), Mask: mask}, gw, nil
	}
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return nil, nil, lastErr
}

// Down removes the address and route Up added and sets the link down if Up
// set it up, so the image's init finds the NIC as in a single-stage boot.
func (n *Net) Down() {
	if n == nil {
		return
	}
	link, err := netlink.LinkByIndex(n.index)
	if err != nil {
		n.log.Warn("network teardown", "interface", n.Name, "err", err)
		return
	}
	if slices.Contains(n.configured, "route") && n.gateway != nil {
		if err := netlink.RouteDel(&netlink.Route{LinkIndex: n.index, Gw: n.gateway}); err != nil && !errors.Is(err, unix.ESRCH) {
			n.log.Warn("network teardown: route", "interface", n.Name, "err", err)
		}
	}
	if slices.Contains(n.configured, "addr") && n.Addr != nil {
		if err := netlink.AddrDel(link, &netlink.Addr{IPNet: n.Addr}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			n.log.Warn("network teardown: address", "interface", n.Name, "err", err)
		}
	}
	if slices.Contains(n.configured, "up") {
		if err := netlink.LinkSetDown(link); err != nil {
			n.log.Warn("network teardown: link down", "interface", n.Name, "err", err)
		}
	}
}
