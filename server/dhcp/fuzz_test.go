package dhcp

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzDecide feeds arbitrary datagrams through the packet → decision path.
// `go test` runs the seeds; `go test -fuzz=FuzzDecide ./server/dhcp` explores.
// It checks: no panic; every reply is a well-formed BOOTREPLY to the same
// transaction; no address is ever held by two MACs; the pool never hands
// out a reservation or the server's address.
func FuzzDecide(f *testing.F) {
	mk := func(d *dhcpv4.DHCPv4, err error) []byte {
		if err != nil {
			f.Fatal(err)
		}
		return d.ToBytes()
	}
	hw := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	known, unknown := hw("52:54:00:00:00:01"), hw("02:00:00:00:00:01")
	f.Add(mk(dhcpv4.NewDiscovery(known, withArch(0), withVendor("PXEClient:Arch:00000:UNDI:002001"))), false)
	f.Add(mk(dhcpv4.NewDiscovery(known, withArch(7), withIPXE())), false)
	f.Add(mk(dhcpv4.NewDiscovery(unknown, withVendor("HTTPClient:Arch:00016"), withArch(16))), false)
	f.Add(mk(dhcpv4.NewDiscovery(unknown, dhcpv4.WithGatewayIP(net.ParseIP("10.201.0.2")))), false)
	f.Add(mk(dhcpv4.New(dhcpv4.WithHwAddr(known), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		serverID("10.201.0.1"), requestedIP("10.201.0.11"))), false)
	f.Add(mk(dhcpv4.New(dhcpv4.WithHwAddr(unknown), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		requestedIP("10.201.0.101"))), false)
	f.Add(mk(dhcpv4.New(dhcpv4.WithHwAddr(unknown), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		requestedIP("10.201.0.100"))), false)
	f.Add(mk(dhcpv4.New(dhcpv4.WithHwAddr(unknown), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(net.ParseIP("10.201.0.100")))), false)
	f.Add(mk(dhcpv4.New(dhcpv4.WithHwAddr(known), dhcpv4.WithMessageType(dhcpv4.MessageTypeInform),
		dhcpv4.WithClientIP(net.ParseIP("10.201.0.11")))), false)
	f.Add(mk(dhcpv4.New(dhcpv4.WithHwAddr(known), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		withVendor("PXEClient"), dhcpv4.WithClientIP(net.ParseIP("10.201.0.50")))), true)
	f.Add([]byte{}, false)
	f.Add([]byte{1, 1, 6, 0}, false)

	e := newEnv(f, testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.103"})
	proxy := newEnv(f, testConfig{mode: "proxy"})
	server := net.ParseIP("10.201.0.1")
	f.Fuzz(func(t *testing.T, data []byte, pxePort bool) {
		for _, env := range []*testEnv{e, proxy} {
			o := env.srv.decide(data, &net.UDPAddr{IP: net.IPv4zero, Port: clientPort}, pxePort, env.store.Current(), env.now)
			if o.reply == nil {
				if o.drop == "" {
					t.Fatal("no reply and no reason")
				}
				continue
			}
			req, err := dhcpv4.FromBytes(data)
			if err != nil {
				t.Fatalf("answered an unparsable packet: %v", err)
			}
			wire := o.reply.ToBytes()
			r, err := dhcpv4.FromBytes(wire)
			if err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if r.OpCode != dhcpv4.OpcodeBootReply || r.TransactionID != req.TransactionID {
				t.Fatalf("bad reply header: %s", r.Summary())
			}
			if r.YourIPAddr.Equal(server) {
				t.Fatal("offered the server's own address")
			}
			if o.dst == nil || o.dst.Port == 0 {
				t.Fatalf("no destination: %v", o.dst)
			}
		}
		// Lease invariants.
		seen := map[string]string{}
		for _, l := range e.srv.Leases() {
			if l.State == StateDeclined || !l.Active(e.now) {
				continue
			}
			if other, dup := seen[l.MAC]; dup {
				t.Fatalf("MAC %s holds %s and %s", l.MAC, other, l.IP)
			}
			seen[l.MAC] = l.IP.String()
			if n := e.store.Current().Nodes.ByIP[l.IP.String()]; n != nil {
				if n.Primary().HWAddr != l.MAC {
					t.Fatalf("reservation %s of %s leased to %s", l.IP, n.Name, l.MAC)
				}
			}
		}
		e.now = e.now.Add(time.Second)
	})
}
