package stage2

import (
	"context"
	"net"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/wwcluster/ww/server/dhcp/netnstest"
)

// inNS runs fn on a goroutine whose OS thread entered namespace ns (never
// unlocked: the thread exits with the goroutine) and waits for it.
func inNS(t *testing.T, ns string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			t.Errorf("open namespace %s: %v", ns, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			t.Errorf("enter namespace %s: %v", ns, err)
			return
		}
		fn()
	}()
	<-done
}

// nsPair is a server/client namespace pair whose client end has no address
// and is down, as a NIC at boot.
func nsPair(t *testing.T, mac string) *netnstest.Pair {
	p := netnstest.New(t, mac)
	for _, args := range [][]string{{"-n", p.Client, "addr", "flush", "dev", p.ClientIf}, {"-n", p.Client, "link", "set", p.ClientIf, "down"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	return p
}

// linkState returns the client end's IPv4 addresses, whether it is up and
// whether a default route exists; call in the client namespace.
func linkState(t *testing.T, name string) (addrs []string, up, defRoute bool) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Errorf("link %s: %v", name, err)
		return nil, false, false
	}
	as, _ := netlink.AddrList(link, netlink.FAMILY_V4)
	for _, a := range as {
		addrs = append(addrs, a.IPNet.String())
	}
	rs, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
	for _, r := range rs {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			defRoute = true
		}
	}
	return addrs, link.Attrs().Flags&net.FlagUp != 0, defRoute
}

// TestUpDHCP: a NIC without an address gets one from DHCP (nclient4, in a
// private namespace pair), with the router as default route; Down puts it
// back as it was.
func TestUpDHCP(t *testing.T) {
	const mac = "52:54:00:77:00:01"
	p := nsPair(t, mac)
	leased := net.IPv4(10, 201, 0, 50).To4()
	srvIP := net.ParseIP(p.ServerIP).To4()
	handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		var typ dhcpv4.MessageType
		switch m.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			typ = dhcpv4.MessageTypeOffer
		case dhcpv4.MessageTypeRequest:
			typ = dhcpv4.MessageTypeAck
		default:
			return
		}
		resp, err := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(typ), dhcpv4.WithYourIP(leased),
			dhcpv4.WithServerIP(srvIP), dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithRouter(srvIP),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srvIP)), dhcpv4.WithLeaseTime(3600))
		if err != nil {
			return
		}
		_, _ = conn.WriteTo(resp.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort})
	}
	ready := make(chan *server4.Server, 1)
	served := p.InServer(t, func() {
		srv, err := server4.NewServer(p.ServerIf, &net.UDPAddr{Port: dhcpv4.ServerPort}, handler)
		if err != nil {
			t.Errorf("DHCP server: %v", err)
			close(ready)
			return
		}
		ready <- srv
		_ = srv.Serve()
	})
	srv := <-ready
	if srv == nil {
		t.FailNow()
	}
	defer func() {
		srv.Close()
		<-served
	}()

	hw, _ := net.ParseMAC(mac)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	inNS(t, p.Client, func() {
		n, err := Up(ctx, NetOptions{HWAddr: hw, Log: testLogger(t), LinkTimeout: 20 * time.Second, DHCPTimeout: 30 * time.Second})
		if err != nil {
			t.Errorf("Up: %v", err)
			return
		}
		if n.Source != "dhcp" || n.Addr.String() != "10.201.0.50/24" || n.Name != p.ClientIf {
			t.Errorf("Up: %+v", n)
		}
		addrs, up, def := linkState(t, p.ClientIf)
		if len(addrs) != 1 || addrs[0] != "10.201.0.50/24" || !up || !def {
			t.Errorf("after Up: addrs %v up %v default route %v", addrs, up, def)
		}
		n.Down()
		addrs, up, def = linkState(t, p.ClientIf)
		if len(addrs) != 0 || up || def {
			t.Errorf("after Down: addrs %v up %v default route %v", addrs, up, def)
		}
	})
}

// TestUpStatic: the address of wwclient.toml is used without DHCP, and
// removed again by Down.
func TestUpStatic(t *testing.T) {
	const mac = "52:54:00:77:00:02"
	p := nsPair(t, mac)
	hw, _ := net.ParseMAC(mac)
	static := &net.IPNet{IP: net.IPv4(10, 201, 0, 60).To4(), Mask: net.CIDRMask(24, 32)}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	inNS(t, p.Client, func() {
		n, err := Up(ctx, NetOptions{HWAddr: hw, Static: static, Log: testLogger(t), LinkTimeout: 20 * time.Second})
		if err != nil {
			t.Errorf("Up: %v", err)
			return
		}
		if n.Source != "static" || n.Addr.String() != static.String() {
			t.Errorf("Up: %+v", n)
		}
		if addrs, up, _ := linkState(t, p.ClientIf); len(addrs) != 1 || addrs[0] != static.String() || !up {
			t.Errorf("after Up: %v up %v", addrs, up)
		}
		n.Down()
		if addrs, up, _ := linkState(t, p.ClientIf); len(addrs) != 0 || up {
			t.Errorf("after Down: %v up %v", addrs, up)
		}
	})
	// No interface with the MAC: a timeout, naming what it waited for.
	inNS(t, p.Client, func() {
		other, _ := net.ParseMAC("52:54:00:77:00:99")
		_, err := Up(ctx, NetOptions{HWAddr: other, LinkTimeout: 300 * time.Millisecond})
		if err == nil {
			t.Error("Up without the NIC succeeded")
		}
	})
}
