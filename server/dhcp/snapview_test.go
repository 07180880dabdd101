package dhcp

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestReplyOptionsPerSnapshot: the option values encoded once per snapshot
// are byte for byte what the library encodes for the expected values, a
// node's own netmask and gateway still win, and another snapshot (here a
// different netmask) gets its own values, not the first one's.
func TestReplyOptionsPerSnapshot(t *testing.T) {
	e := newEnv(t, testConfig{rangeStart: "10.201.0.150", rangeEnd: "10.201.0.160"})
	ip := func(s string) net.IP { return net.ParseIP(s).To4() }
	common := map[dhcpv4.OptionCode]dhcpv4.Option{
		dhcpv4.OptionServerIdentifier:   dhcpv4.OptServerIdentifier(ip("10.201.0.1")),
		dhcpv4.OptionDomainNameServer:   dhcpv4.OptDNS(ip("10.201.0.53"), ip("10.201.0.54")),
		dhcpv4.OptionDomainName:         dhcpv4.OptDomainName("cluster.test"),
		dhcpv4.OptionIPAddressLeaseTime: dhcpv4.OptIPAddressLeaseTime(time.Hour),
		dhcpv4.OptionRenewTimeValue:     dhcpv4.OptRenewTimeValue(30 * time.Minute),
		dhcpv4.OptionRebindingTimeValue: dhcpv4.OptRebindingTimeValue(time.Hour * 7 / 8),
	}
	check := func(name string, o outcome, want map[dhcpv4.OptionCode]dhcpv4.Option) {
		t.Helper()
		if o.reply == nil {
			t.Fatalf("%s: no reply (%s)", name, o.drop)
		}
		for code, opt := range want {
			if got, w := o.reply.Options.Get(code), opt.Value.ToBytes(); !bytes.Equal(got, w) {
				t.Errorf("%s: option %v = %v, want %v", name, code, got, w)
			}
		}
	}
	with := func(extra map[dhcpv4.OptionCode]dhcpv4.Option) map[dhcpv4.OptionCode]dhcpv4.Option {
		m := map[dhcpv4.OptionCode]dhcpv4.Option{}
		for k, v := range common {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}

	// A pool client that netboots: the config's values and the TFTP server name.
	pxe := e.do(t, discover(t, "52:54:00:00:00:99", withArch(7), withVendor("PXEClient:Arch:00007:UNDI:003016")))
	check("pool offer", pxe, with(map[dhcpv4.OptionCode]dhcpv4.Option{
		dhcpv4.OptionSubnetMask:     dhcpv4.OptSubnetMask(net.IPv4Mask(255, 255, 255, 0)),
		dhcpv4.OptionRouter:         dhcpv4.OptRouter(ip("10.201.0.254")),
		dhcpv4.OptionTFTPServerName: dhcpv4.OptTFTPServerName("10.201.0.1"),
	}))
	// n002 has its own netmask and gateway in nodes.toml.
	n2 := e.do(t, request(t, "52:54:00:00:00:02", serverID("10.201.0.1"), requestedIP("10.201.0.102")))
	check("n002 ack", n2, with(map[dhcpv4.OptionCode]dhcpv4.Option{
		dhcpv4.OptionSubnetMask: dhcpv4.OptSubnetMask(net.IPv4Mask(255, 255, 0, 0)),
		dhcpv4.OptionRouter:     dhcpv4.OptRouter(ip("10.201.0.1")),
	}))

	// Another snapshot with another netmask, through the same server.
	other := newStore(t, testConfig{rangeStart: "10.201.0.150", rangeEnd: "10.201.0.160", netmask: "255.255.0.0"})
	req := discover(t, "52:54:00:00:00:98")
	o := e.srv.decide(req.ToBytes(), nil, false, other.Current(), e.now)
	check("other snapshot", o, with(map[dhcpv4.OptionCode]dhcpv4.Option{
		dhcpv4.OptionSubnetMask: dhcpv4.OptSubnetMask(net.IPv4Mask(255, 255, 0, 0)),
	}))
	// And back: the first snapshot's values again.
	o = e.srv.decide(discover(t, "52:54:00:00:00:97").ToBytes(), nil, false, e.store.Current(), e.now)
	check("first snapshot again", o, with(map[dhcpv4.OptionCode]dhcpv4.Option{
		dhcpv4.OptionSubnetMask: dhcpv4.OptSubnetMask(net.IPv4Mask(255, 255, 255, 0)),
	}))
}
