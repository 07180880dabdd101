package dhcp

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/status"
)

func TestClassify(t *testing.T) {
	req := discover(t, "52:54:00:00:00:01", withArch(7), withVendor("PXEClient:Arch:00007:UNDI:003000"))
	c := classify(req, "52:54:00:00:00:01")
	if !c.PXE || c.HTTP || c.IPXE || !c.HasArch || c.Arch != 7 || !c.Netboot() {
		t.Errorf("classify = %+v", c)
	}
	// iPXE marks itself with option 175 even without user class.
	req = discover(t, "52:54:00:00:00:01", dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), []byte{1, 1, 1})))
	if c := classify(req, ""); !c.IPXE {
		t.Errorf("option 175: classify = %+v", c)
	}
	// RFC 3004 encoded user class.
	req = discover(t, "52:54:00:00:00:01", dhcpv4.WithOption(dhcpv4.OptRFC3004UserClass([]string{"iPXE"})))
	if c := classify(req, ""); !c.IPXE {
		t.Errorf("RFC 3004 user class: classify = %+v", c)
	}
	req = discover(t, "52:54:00:00:00:01", withVendor("HTTPClient:Arch:00016:UNDI:003001"))
	if c := classify(req, ""); !c.HTTP || c.PXE {
		t.Errorf("HTTPClient: classify = %+v", c)
	}
	if c := classify(discover(t, "52:54:00:00:00:01"), ""); c.Netboot() {
		t.Errorf("plain client is netboot: %+v", c)
	}
}

// checkOffer verifies the common parts of an address-bearing reply.
func checkReply(t *testing.T, o outcome, typ dhcpv4.MessageType, yiaddr, file string) {
	t.Helper()
	if o.reply == nil {
		t.Fatalf("no reply (drop %q, note %q)", o.drop, o.note)
	}
	r := o.reply
	if r.MessageType() != typ {
		t.Fatalf("type = %s, want %s", r.MessageType(), typ)
	}
	if r.OpCode != dhcpv4.OpcodeBootReply {
		t.Errorf("op = %v", r.OpCode)
	}
	if got := r.YourIPAddr.String(); got != yiaddr {
		t.Errorf("yiaddr = %s, want %s", got, yiaddr)
	}
	if got := r.ServerIdentifier().String(); got != "10.201.0.1" {
		t.Errorf("server id = %s", got)
	}
	if r.BootFileName != file {
		t.Errorf("file = %q, want %q", r.BootFileName, file)
	}
	if file != "" {
		if got := r.BootFileNameOption(); got != file {
			t.Errorf("option 67 = %q, want %q", got, file)
		}
		if got := r.TFTPServerName(); got != "10.201.0.1" {
			t.Errorf("option 66 = %q", got)
		}
		if !r.ServerIPAddr.Equal(net.ParseIP("10.201.0.1")) {
			t.Errorf("siaddr = %s", r.ServerIPAddr)
		}
	}
}

func TestReservationOffer(t *testing.T) {
	e := newEnv(t, testConfig{})
	o := e.do(t, discover(t, "52:54:00:00:00:01", withArch(0), withVendor("PXEClient:Arch:00000:UNDI:002001")))
	checkReply(t, o, dhcpv4.MessageTypeOffer, "10.201.0.11", "undionly.kpxe")
	r := o.reply
	if got := net.IP(r.SubnetMask()).String(); got != "255.255.255.0" {
		t.Errorf("netmask = %s", got)
	}
	if rt := r.Router(); len(rt) != 1 || rt[0].String() != "10.201.0.254" {
		t.Errorf("router = %v", rt)
	}
	if dns := r.DNS(); len(dns) != 2 || dns[0].String() != "10.201.0.53" {
		t.Errorf("dns = %v", dns)
	}
	if r.DomainName() != "cluster.test" || r.HostName() != "n001" {
		t.Errorf("domain %q hostname %q", r.DomainName(), r.HostName())
	}
	if lt := r.IPAddressLeaseTime(0); lt != time.Hour {
		t.Errorf("lease = %s", lt)
	}
	if r.ClassIdentifier() != vendorPXE {
		t.Errorf("option 60 = %q", r.ClassIdentifier())
	}
	if v := r.Options.Get(dhcpv4.OptionVendorSpecificInformation); string(v) != "\x06\x01\x08\xff" {
		t.Errorf("option 43 = %x", v)
	}
	if o.dst.String() != "255.255.255.255:68" {
		t.Errorf("dst = %s", o.dst)
	}
	want := status.Event{MAC: "52:54:00:00:00:01", Node: "n001", IP: "10.201.0.11", Stage: status.StageDHCP, Sent: "undionly.kpxe", Time: e.now}
	if o.event == nil || *o.event != want {
		t.Errorf("event = %+v, want %+v", o.event, want)
	}

	// Device netmask and gateway win over [dhcp].
	o = e.do(t, discover(t, "52:54:00:00:00:02", withArch(7)))
	checkReply(t, o, dhcpv4.MessageTypeOffer, "10.201.0.102", "snponly.efi")
	if got := net.IP(o.reply.SubnetMask()).String(); got != "255.255.0.0" {
		t.Errorf("device netmask = %s", got)
	}
	if rt := o.reply.Router(); len(rt) != 1 || rt[0].String() != "10.201.0.1" {
		t.Errorf("device gateway = %v", rt)
	}
	if o.reply.Options.Has(dhcpv4.OptionClassIdentifier) {
		t.Errorf("option 60 echoed to a client that sent none")
	}
}

func TestBootFilesByArch(t *testing.T) {
	e := newEnv(t, testConfig{arm64: "ipxe-arm64.efi"})
	mac := "52:54:00:00:00:01"
	for _, tc := range []struct {
		mods []dhcpv4.Modifier
		file string
	}{
		{[]dhcpv4.Modifier{withArch(0)}, "undionly.kpxe"},
		{[]dhcpv4.Modifier{withArch(7)}, "snponly.efi"},
		{[]dhcpv4.Modifier{withArch(11)}, "ipxe-arm64.efi"},
		{[]dhcpv4.Modifier{withArch(0), withIPXE()}, "http://10.201.0.1:9873/ipxe/" + mac},
		{[]dhcpv4.Modifier{withVendor("HTTPClient:Arch:00016:UNDI:003001"), withArch(16)}, "http://10.201.0.1:9873/ipxe-bin/ipxe.efi"},
		{nil, ""}, // an OS DHCP client gets no boot file
	} {
		o := e.do(t, discover(t, mac, tc.mods...))
		checkReply(t, o, dhcpv4.MessageTypeOffer, "10.201.0.11", tc.file)
		if (tc.file == "") != (o.event == nil) {
			t.Errorf("file %q: event %+v", tc.file, o.event)
		}
	}
	// iPXE is told not to wait for ProxyDHCP offers (175.176 = 1); firmware PXE gets no 175.
	o := e.do(t, discover(t, mac, withArch(0), withIPXE()))
	if v := o.reply.Options.Get(dhcpv4.GenericOptionCode(175)); string(v) != "\xb0\x01\x01" {
		t.Errorf("option 175 to iPXE = %x, want b00101", v)
	}
	o = e.do(t, discover(t, mac, withArch(0), withVendor("PXEClient:Arch:00000:UNDI:002001")))
	if o.reply.Options.Has(dhcpv4.GenericOptionCode(175)) {
		t.Error("option 175 sent to a firmware PXE client")
	}
	// HTTP boot echoes HTTPClient.
	o = e.do(t, discover(t, mac, withVendor("HTTPClient:Arch:00016:UNDI:003001"), withArch(16)))
	if o.reply.ClassIdentifier() != vendorHTTP {
		t.Errorf("option 60 = %q", o.reply.ClassIdentifier())
	}
	// No arm64 iPXE configured: the arm64 shim (Debian has no arm64 iPXE;
	// shim, then GRUB).
	e2 := newEnv(t, testConfig{})
	o = e2.do(t, discover(t, mac, withArch(11)))
	checkReply(t, o, dhcpv4.MessageTypeOffer, "10.201.0.11", "shimaa64.efi")
}

func TestUnknownMAC(t *testing.T) {
	// No pool: silence, but the status shows the MAC.
	e := newEnv(t, testConfig{})
	o := e.do(t, discover(t, "02:00:00:00:00:99", withArch(0), withVendor("PXEClient")))
	if o.reply != nil || o.drop != "unknown_mac" {
		t.Fatalf("unknown MAC without pool: reply %v drop %q", o.reply, o.drop)
	}
	if o.event == nil || o.event.Sent != "UNKNOWN_MAC" || o.event.Node != "" {
		t.Errorf("event = %+v", o.event)
	}
	// A known node without an address and no pool: silence.
	if o := e.do(t, discover(t, "52:54:00:00:00:03")); o.reply != nil || o.drop != "node_without_address" {
		t.Errorf("node without address: reply %v drop %q", o.reply, o.drop)
	}

	// With a pool: an address from it; the pool skips n002's reservation (.102).
	e = newEnv(t, testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.104"})
	seen := map[string]string{}
	for i, mac := range []string{"02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03", "02:00:00:00:00:04"} {
		o := e.do(t, discover(t, mac, withArch(0)))
		if o.reply == nil {
			t.Fatalf("mac %d: no offer (%s)", i, o.drop)
		}
		ip := o.reply.YourIPAddr.String()
		if ip == "10.201.0.102" {
			t.Errorf("pool handed out n002's reservation")
		}
		if other, dup := seen[ip]; dup {
			t.Errorf("%s offered to %s and %s", ip, other, mac)
		}
		seen[ip] = mac
		if o.event == nil || o.event.Node != "" || o.event.IP != ip {
			t.Errorf("event = %+v", o.event)
		}
		if o.reply.HostName() != "" {
			t.Errorf("unknown MAC got hostname %q", o.reply.HostName())
		}
	}
	// Pool (4 usable) exhausted.
	if o := e.do(t, discover(t, "02:00:00:00:00:05")); o.reply != nil || o.drop != "pool_exhausted" {
		t.Errorf("exhausted pool: reply %v drop %q", o.reply, o.drop)
	}
	// The same MAC asking again gets the same address.
	o = e.do(t, discover(t, "02:00:00:00:00:01"))
	if o.reply == nil || seen[o.reply.YourIPAddr.String()] != "02:00:00:00:00:01" {
		t.Errorf("repeat DISCOVER moved the address: %v", o.reply)
	}
	// A node without address uses the pool too, with its hostname.
	e = newEnv(t, testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.110"})
	o = e.do(t, discover(t, "52:54:00:00:00:03"))
	if o.reply == nil || o.reply.HostName() != "n003" {
		t.Fatalf("n003: %v", o.reply)
	}
}

func TestRequestAckNak(t *testing.T) {
	e := newEnv(t, testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.110"})
	mac := "52:54:00:00:00:01"
	// SELECTING.
	o := e.do(t, request(t, mac, serverID("10.201.0.1"), requestedIP("10.201.0.11"), withArch(7)))
	checkReply(t, o, dhcpv4.MessageTypeAck, "10.201.0.11", "snponly.efi")
	if o.event == nil || o.event.Sent != "snponly.efi" {
		t.Errorf("event = %+v", o.event)
	}
	if l, ok := e.srv.leases.byMACLease(mac); !ok || l.State != StateBound || l.Node != "n001" {
		t.Errorf("lease = %+v", l)
	}
	// (LeaseByIP uses the wall clock; the test's leases end in 2030.)
	if m, n, ok := e.srv.LeaseByIP("10.201.0.11"); !ok || m != mac || n != "n001" {
		t.Errorf("LeaseByIP = %q %q %v", m, n, ok)
	}
	// Another server's id: ignored.
	o = e.do(t, request(t, mac, serverID("10.201.0.99"), requestedIP("10.201.0.11")))
	if o.reply != nil || o.drop != "other_server" {
		t.Errorf("other server: reply %v drop %q", o.reply, o.drop)
	}
	// INIT-REBOOT asking for someone else's address: NAK, broadcast.
	o = e.do(t, request(t, mac, requestedIP("10.201.0.50")))
	if o.reply == nil || o.reply.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("wrong address: %v (drop %q)", o.reply, o.drop)
	}
	if o.dst.String() != "255.255.255.255:68" || !o.reply.YourIPAddr.IsUnspecified() {
		t.Errorf("NAK dst %s yiaddr %s", o.dst, o.reply.YourIPAddr)
	}
	// RENEWING: ciaddr, unicast back.
	o = e.do(t, request(t, mac, dhcpv4.WithClientIP(net.ParseIP("10.201.0.11"))))
	checkReply(t, o, dhcpv4.MessageTypeAck, "10.201.0.11", "")
	if o.dst.String() != "10.201.0.11:68" {
		t.Errorf("renew dst = %s", o.dst)
	}
	if !o.reply.ClientIPAddr.Equal(net.ParseIP("10.201.0.11")) {
		t.Errorf("ACK ciaddr = %s", o.reply.ClientIPAddr)
	}
	// An unknown MAC requesting a node's reservation: NAK.
	o = e.do(t, request(t, "02:00:00:00:00:01", requestedIP("10.201.0.11")))
	if o.reply == nil || o.reply.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("unknown MAC asking for a reservation: %v (drop %q)", o.reply, o.drop)
	}
	// ... but may have a free pool address it asks for (INIT-REBOOT after our restart).
	o = e.do(t, request(t, "02:00:00:00:00:01", requestedIP("10.201.0.105")))
	checkReply(t, o, dhcpv4.MessageTypeAck, "10.201.0.105", "")
	// Another MAC can't take it.
	o = e.do(t, request(t, "02:00:00:00:00:02", requestedIP("10.201.0.105")))
	if o.reply == nil || o.reply.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("second MAC took a bound address: %v (drop %q)", o.reply, o.drop)
	}
	// ... and is not offered it either.
	o = e.do(t, discover(t, "02:00:00:00:00:02", requestedIP("10.201.0.105")))
	if o.reply == nil || o.reply.YourIPAddr.String() == "10.201.0.105" {
		t.Errorf("offer to second MAC: %v", o.reply)
	}
}

func TestOtherServerDropsOffer(t *testing.T) {
	e := newEnv(t, testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.100"})
	o := e.do(t, discover(t, "02:00:00:00:00:01"))
	if o.reply == nil {
		t.Fatal("no offer")
	}
	// The single pool address is held for the offer ...
	if o := e.do(t, discover(t, "02:00:00:00:00:02")); o.reply != nil {
		t.Fatalf("offered the held address again")
	}
	// ... until the client picks another server.
	e.do(t, request(t, "02:00:00:00:00:01", serverID("10.201.0.77"), requestedIP("10.0.0.5")))
	if o := e.do(t, discover(t, "02:00:00:00:00:02")); o.reply == nil || o.reply.YourIPAddr.String() != "10.201.0.100" {
		t.Errorf("freed offer not reused: %v", o.reply)
	}
}

func TestOfferExpires(t *testing.T) {
	e := newEnv(t, testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.100"})
	if o := e.do(t, discover(t, "02:00:00:00:00:01")); o.reply == nil {
		t.Fatal("no offer")
	}
	e.now = e.now.Add(offerHold + time.Second)
	if o := e.do(t, discover(t, "02:00:00:00:00:02")); o.reply == nil || o.reply.YourIPAddr.String() != "10.201.0.100" {
		t.Errorf("expired offer not reused: %v", o.reply)
	}
}

func TestDeclineRelease(t *testing.T) {
	e := newEnv(t, testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.101"})
	mac := "02:00:00:00:00:01"
	o := e.do(t, discover(t, mac))
	first := o.reply.YourIPAddr.String()
	e.do(t, request(t, mac, serverID("10.201.0.1"), requestedIP(first)))
	// DECLINE: the address is held back; the client gets the other one.
	o = e.do(t, msg(t, dhcpv4.MessageTypeDecline, mac, serverID("10.201.0.1"), requestedIP(first)))
	if o.reply != nil || o.drop != "declined" {
		t.Fatalf("decline: %v %q", o.reply, o.drop)
	}
	o = e.do(t, discover(t, mac))
	if o.reply == nil || o.reply.YourIPAddr.String() == first {
		t.Fatalf("declined address offered again: %v", o.reply)
	}
	second := o.reply.YourIPAddr.String()
	// Nobody gets the declined one while held.
	if o := e.do(t, discover(t, "02:00:00:00:00:02")); o.reply != nil {
		t.Errorf("declined address handed out: %v", o.reply.YourIPAddr)
	}
	// After the hold it is usable again.
	e.now = e.now.Add(declineHold + time.Second)
	if o := e.do(t, discover(t, "02:00:00:00:00:02")); o.reply == nil || o.reply.YourIPAddr.String() != first {
		t.Errorf("after hold: %v", o.reply)
	}

	// RELEASE frees the address for another MAC.
	e = newEnv(t, testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.100"})
	o = e.do(t, discover(t, mac))
	e.do(t, request(t, mac, serverID("10.201.0.1"), requestedIP("10.201.0.100")))
	o = e.do(t, msg(t, dhcpv4.MessageTypeRelease, "02:00:00:00:00:09", dhcpv4.WithClientIP(net.ParseIP("10.201.0.100"))))
	if o.drop != "release_unknown_lease" {
		t.Errorf("a MAC released another's lease: %q", o.drop)
	}
	o = e.do(t, msg(t, dhcpv4.MessageTypeRelease, mac, serverID("10.201.0.1"), dhcpv4.WithClientIP(net.ParseIP("10.201.0.100"))))
	if o.drop != "released" {
		t.Errorf("release: %q", o.drop)
	}
	if o := e.do(t, discover(t, "02:00:00:00:00:02")); o.reply == nil || o.reply.YourIPAddr.String() != "10.201.0.100" {
		t.Errorf("released address not reused: %v", o.reply)
	}
	_ = second
}

// TestDeclineNeverTakesReservation: a DECLINE (from the node's MAC or a
// spoofed one) of a nodes.toml address is logged and counted, and the node
// keeps getting its address; a hold left in an old lease file is ignored.
func TestDeclineNeverTakesReservation(t *testing.T) {
	e := newEnv(t, testConfig{})
	mac := "52:54:00:00:00:01" // n001 → 10.201.0.11
	e.do(t, request(t, mac, serverID("10.201.0.1"), requestedIP("10.201.0.11")))
	for _, from := range []string{mac, "02:66:66:66:66:66"} {
		o := e.do(t, msg(t, dhcpv4.MessageTypeDecline, from, serverID("10.201.0.1"), requestedIP("10.201.0.11")))
		if o.reply != nil || o.drop != "decline_of_reservation" || !o.handled || !o.warn {
			t.Errorf("DECLINE from %s: reply %v, drop %q, handled %v, warn %v", from, o.reply, o.drop, o.handled, o.warn)
		}
	}
	if got := counterValue(e.srv.m.declines.WithLabelValues("reservation_kept")); got != 2 {
		t.Errorf("reservation_kept = %v, want 2", got)
	}
	o := e.do(t, discover(t, mac, withArch(0)))
	checkReply(t, o, dhcpv4.MessageTypeOffer, "10.201.0.11", "undionly.kpxe")
	o = e.do(t, request(t, mac, serverID("10.201.0.1"), requestedIP("10.201.0.11")))
	checkReply(t, o, dhcpv4.MessageTypeAck, "10.201.0.11", "")

	// A decline hold on the reserved address (as an older server wrote it) does not block the node.
	t2 := newLeaseTable()
	t2.load([]Lease{{IP: netip.MustParseAddr("10.201.0.11"), MAC: mac, State: StateDeclined, Expires: e.now.Add(time.Hour)}})
	e.srv.leases.(*fileStore).leaseTable = t2
	e.srv.handlers[config.ModeReservation] = &reservationHandler{leases: e.srv.leases, m: e.srv.m}
	o = e.do(t, discover(t, mac, withArch(0)))
	checkReply(t, o, dhcpv4.MessageTypeOffer, "10.201.0.11", "undionly.kpxe")
}

// TestDeclineQuarantineBounded: pool declines hold addresses back, at most
// maxQuarantined at a time, each for declineHold.
func TestDeclineQuarantineBounded(t *testing.T) {
	e := newEnv(t, testConfig{rangeStart: "10.201.1.0", rangeEnd: "10.201.2.255", netmask: "255.255.0.0"})
	declined := 0
	for i := 0; i < maxQuarantined+10; i++ {
		mac := fmt.Sprintf("02:00:00:00:01:%02x", i)
		o := e.do(t, discover(t, mac))
		if o.reply == nil {
			t.Fatalf("no offer for %s: %q", mac, o.drop)
		}
		ip := o.reply.YourIPAddr.String()
		e.do(t, request(t, mac, serverID("10.201.0.1"), requestedIP(ip)))
		o = e.do(t, msg(t, dhcpv4.MessageTypeDecline, mac, serverID("10.201.0.1"), requestedIP(ip)))
		if o.drop == "declined" {
			declined++
		} else if o.drop != "decline_quarantine_full" {
			t.Fatalf("decline %d: %q", i, o.drop)
		}
	}
	if declined != maxQuarantined {
		t.Errorf("%d addresses quarantined, want at most %d", declined, maxQuarantined)
	}
	if got := counterValue(e.srv.m.declines.WithLabelValues("quarantine_full")); got != 10 {
		t.Errorf("quarantine_full = %v, want 10", got)
	}
	// After the hold, the quarantine has room again.
	e.now = e.now.Add(declineHold + time.Second)
	mac := "02:00:00:00:02:01"
	o := e.do(t, discover(t, mac))
	ip := o.reply.YourIPAddr.String()
	e.do(t, request(t, mac, serverID("10.201.0.1"), requestedIP(ip)))
	if o := e.do(t, msg(t, dhcpv4.MessageTypeDecline, mac, serverID("10.201.0.1"), requestedIP(ip))); o.drop != "declined" {
		t.Errorf("decline after the holds expired: %q", o.drop)
	}
}

// fakeProber answers probes from a set of addresses in use.
type fakeProber struct {
	mu     sync.Mutex
	used   map[netip.Addr]bool
	probed []netip.Addr
}

func (f *fakeProber) inUse(_ string, ip netip.Addr) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probed = append(f.probed, ip)
	return f.used[ip], nil
}

// TestProbeUntilTrusted: with the table untrusted, an address that answers
// a probe is not offered (and quarantined); results are cached; once the
// table is trusted nothing is probed.
func TestProbeUntilTrusted(t *testing.T) {
	e := newEnv(t, testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.110"})
	fp := &fakeProber{used: map[netip.Addr]bool{netip.MustParseAddr("10.201.0.100"): true}}
	e.srv.guard = &probeGuard{prober: fp, until: e.now.Add(time.Hour), reason: "test"}
	e.srv.handlers[config.ModeReservation] = &reservationHandler{leases: e.srv.leases, m: e.srv.m, guard: e.srv.guard}
	o := e.do(t, discover(t, "02:00:00:00:00:01"))
	checkReply(t, o, dhcpv4.MessageTypeOffer, "10.201.0.101", "")
	o = e.do(t, discover(t, "02:00:00:00:00:01")) // cached: no new probe
	checkReply(t, o, dhcpv4.MessageTypeOffer, "10.201.0.101", "")
	if len(fp.probed) != 2 {
		t.Errorf("probed %v, want .100 then .101 once", fp.probed)
	}
	if l, ok := e.srv.leases.lookupIP(netip.MustParseAddr("10.201.0.100")); !ok || l.State != StateDeclined {
		t.Errorf("address in use not quarantined: %+v", l)
	}
	if got := counterValue(e.srv.m.probes.WithLabelValues("in_use")); got != 1 {
		t.Errorf("probes in_use = %v", got)
	}
	e.now = e.now.Add(time.Hour)
	e.do(t, discover(t, "02:00:00:00:00:02"))
	if len(fp.probed) != 2 {
		t.Errorf("probed after the table became trusted: %v", fp.probed)
	}
}

func TestInform(t *testing.T) {
	e := newEnv(t, testConfig{})
	o := e.do(t, msg(t, dhcpv4.MessageTypeInform, "52:54:00:00:00:01", dhcpv4.WithClientIP(net.ParseIP("10.201.0.11"))))
	checkReply(t, o, dhcpv4.MessageTypeAck, "0.0.0.0", "")
	if o.reply.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Error("INFORM ACK carries a lease time")
	}
	if o.reply.HostName() != "n001" || o.reply.DomainName() != "cluster.test" {
		t.Errorf("options: %s", o.reply.Summary())
	}
	if o.dst.String() != "10.201.0.11:68" {
		t.Errorf("dst = %s", o.dst)
	}
	if _, ok := e.srv.leases.byMACLease("52:54:00:00:00:01"); ok {
		t.Error("INFORM created a lease")
	}
	if o := e.do(t, msg(t, dhcpv4.MessageTypeInform, "02:00:00:00:00:01", dhcpv4.WithClientIP(net.ParseIP("10.201.0.200")))); o.reply != nil {
		t.Error("INFORM answered for an unknown MAC without pool")
	}
}

func TestRelayed(t *testing.T) {
	nodes := testNodesTOML + `
[nodes.r001]
profiles = ["default"]
[nodes.r001.network.eth0]
hwaddr = "52:54:00:00:01:01"
ipaddr = "10.202.0.11"
`
	e := newEnv(t, testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.110", nodes: nodes})
	relay := func(gi string) dhcpv4.Modifier { return dhcpv4.WithGatewayIP(net.ParseIP(gi)) }
	// Reservation in the relay's subnet: answered to the relay on port 67.
	o := e.do(t, discover(t, "52:54:00:00:01:01", relay("10.202.0.1"), withArch(0)))
	checkReply(t, o, dhcpv4.MessageTypeOffer, "10.202.0.11", "undionly.kpxe")
	if o.dst.String() != "10.202.0.1:67" || !o.reply.GatewayIPAddr.Equal(net.ParseIP("10.202.0.1")) {
		t.Errorf("dst %s giaddr %s", o.dst, o.reply.GatewayIPAddr)
	}
	// Reservation outside the relay's subnet: silence.
	if o := e.do(t, discover(t, "52:54:00:00:00:01", relay("10.202.0.1"))); o.reply != nil || o.drop != "reservation_not_in_relay_subnet" {
		t.Errorf("reservation outside relay subnet: %v %q", o.reply, o.drop)
	}
	// Pool is 10.201.0.x: unknown MACs behind a 10.202.0.0/24 relay get nothing ...
	if o := e.do(t, discover(t, "02:00:00:00:00:01", relay("10.202.0.1"))); o.reply != nil || o.drop != "pool_not_in_relay_subnet" {
		t.Errorf("pool outside relay subnet: %v %q", o.reply, o.drop)
	}
	// ... behind a relay in the pool's subnet they do.
	o = e.do(t, discover(t, "02:00:00:00:00:01", relay("10.201.0.2")))
	if o.reply == nil || o.dst.String() != "10.201.0.2:67" {
		t.Errorf("relay in pool subnet: %v dst %v (%s)", o.reply, o.dst, o.drop)
	}
	// A NAK through a relay has the broadcast bit.
	o = e.do(t, request(t, "52:54:00:00:01:01", relay("10.202.0.1"), requestedIP("10.202.0.99")))
	if o.reply == nil || o.reply.MessageType() != dhcpv4.MessageTypeNak || !o.reply.IsBroadcast() || o.dst.String() != "10.202.0.1:67" {
		t.Errorf("relayed NAK: %v dst %v", o.reply, o.dst)
	}
}

func TestReservedAddressHeldByOtherMAC(t *testing.T) {
	// A pool client got .105; then the admin reserved .105 for n005.
	e := newEnv(t, testConfig{rangeStart: "10.201.0.105", rangeEnd: "10.201.0.105"})
	o := e.do(t, discover(t, "02:00:00:00:00:01"))
	e.do(t, request(t, "02:00:00:00:00:01", serverID("10.201.0.1"), requestedIP(o.reply.YourIPAddr.String())))
	dir := e.store.Root()
	writeTree(t, dir, testConfig{rangeStart: "10.201.0.105", rangeEnd: "10.201.0.105", nodes: testNodesTOML + `
[nodes.n005]
profiles = ["default"]
[nodes.n005.network.eth0]
hwaddr = "52:54:00:00:00:05"
ipaddr = "10.201.0.105"
`})
	if err := e.store.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.store.Current().Nodes.ByName["n005"]; !ok {
		t.Fatal("reload did not pick up n005")
	}
	// n005 is not given an address still bound to another MAC ...
	if o := e.do(t, discover(t, "52:54:00:00:00:05")); o.reply != nil || o.drop != "reserved_address_in_use" {
		t.Errorf("n005: %v %q", o.reply, o.drop)
	}
	// ... and the old holder is NAKed at renewal, since .105 is now a reservation.
	o = e.do(t, request(t, "02:00:00:00:00:01", dhcpv4.WithClientIP(net.ParseIP("10.201.0.105"))))
	if o.reply == nil || o.reply.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("old holder renew: %v %q", o.reply, o.drop)
	}
}

func TestProxyMode(t *testing.T) {
	e := newEnv(t, testConfig{mode: "proxy", rangeStart: "10.201.0.100", rangeEnd: "10.201.0.110"})
	mac := "52:54:00:00:00:01"
	o := e.do(t, discover(t, mac, withArch(7), withVendor("PXEClient:Arch:00007:UNDI:003000")))
	checkReply(t, o, dhcpv4.MessageTypeOffer, "0.0.0.0", "snponly.efi")
	r := o.reply
	if r.ClassIdentifier() != vendorPXE || string(r.Options.Get(dhcpv4.OptionVendorSpecificInformation)) != "\x06\x01\x08\xff" {
		t.Errorf("proxy offer lacks PXE options: %s", r.Summary())
	}
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionDomainNameServer} {
		if r.Options.Has(code) {
			t.Errorf("proxy offer carries %v", code)
		}
	}
	if o.event == nil || o.event.Node != "n001" || o.event.IP != "" {
		t.Errorf("event = %+v", o.event)
	}
	// Non-PXE clients and unknown MACs: silence. No leases are made.
	if o := e.do(t, discover(t, mac, withArch(7))); o.reply != nil || o.drop != "proxy_not_pxe" {
		t.Errorf("non-PXE: %v %q", o.reply, o.drop)
	}
	if o := e.do(t, discover(t, "02:00:00:00:00:01", withVendor("PXEClient"))); o.reply != nil || o.drop != "unknown_mac" {
		t.Errorf("unknown: %v %q", o.reply, o.drop)
	}
	if ls := e.srv.Leases(); len(ls) != 0 {
		t.Errorf("proxy mode made leases: %v", ls)
	}
	// The REQUEST to the real DHCP server is not ours.
	if o := e.do(t, request(t, mac, withVendor("PXEClient"), serverID("10.201.0.254"), requestedIP("10.201.0.50"))); o.reply != nil {
		t.Errorf("proxy answered a REQUEST: %v", o.reply)
	}
	// ProxyDHCP REQUEST on port 4011: ACK back to the source.
	src := &net.UDPAddr{IP: net.ParseIP("10.201.0.50"), Port: 68}
	o = e.doFrom(t, request(t, mac, withVendor("PXEClient:Arch:00000"), withArch(0), withIPXE(),
		dhcpv4.WithClientIP(net.ParseIP("10.201.0.50"))), src, true)
	checkReply(t, o, dhcpv4.MessageTypeAck, "0.0.0.0", "http://10.201.0.1:9873/ipxe/"+mac)
	if o.reply.Options.Has(dhcpv4.GenericOptionCode(175)) {
		t.Error("a ProxyDHCP reply tells iPXE to ignore ProxyDHCP")
	}
	if o.dst.String() != "10.201.0.50:68" {
		t.Errorf("4011 dst = %s", o.dst)
	}
}

func TestMalformed(t *testing.T) {
	e := newEnv(t, testConfig{})
	snap := e.store.Current()
	good := discover(t, "52:54:00:00:00:01").ToBytes()
	reply := discover(t, "52:54:00:00:00:01")
	reply.OpCode = dhcpv4.OpcodeBootReply
	bootp := discover(t, "52:54:00:00:00:01")
	bootp.Options.Del(dhcpv4.OptionDHCPMessageType)
	hops := discover(t, "52:54:00:00:00:01")
	hops.HopCount = 17
	ib := discover(t, "52:54:00:00:00:01")
	ib.ClientHWAddr = make(net.HardwareAddr, 16)
	for _, tc := range []struct {
		name string
		data []byte
		drop string
	}{
		{"empty", nil, "malformed"},
		{"short", good[:100], "malformed"},
		{"bad cookie", append(append([]byte{}, good[:236]...), 1, 2, 3, 4), "malformed"},
		{"truncated option", append(append([]byte{}, good[:240]...), 53, 5, 1), "malformed"},
		{"reply", reply.ToBytes(), "not_request"},
		{"bootp", bootp.ToBytes(), "bootp"},
		{"hops", hops.ToBytes(), "too_many_hops"},
		{"infiniband", ib.ToBytes(), "bad_hwaddr"},
	} {
		o := e.srv.decide(tc.data, nil, false, snap, e.now)
		if o.reply != nil || o.drop != tc.drop {
			t.Errorf("%s: reply %v drop %q, want %q", tc.name, o.reply != nil, o.drop, tc.drop)
		}
	}
}

func TestOffLinkRouterNotSent(t *testing.T) {
	nodes := testNodesTOML + `
[nodes.n009]
profiles = ["default"]
[nodes.n009.network.eth0]
hwaddr = "52:54:00:00:00:09"
ipaddr = "10.201.0.19"
gateway = "10.9.9.9"
`
	e := newEnv(t, testConfig{nodes: nodes})
	o := e.do(t, discover(t, "52:54:00:00:00:09", withArch(7)))
	checkReply(t, o, dhcpv4.MessageTypeOffer, "10.201.0.19", "snponly.efi")
	if o.reply.Options.Has(dhcpv4.OptionRouter) {
		t.Errorf("off-link router sent: %v", o.reply.Router())
	}
	if o.note == "" {
		t.Error("dropping the router was not noted")
	}
}

// TestBootFileGRUBNode: DHCP knows the MAC, so a node with bootloader =
// "grub" gets the shim on x86-64 UEFI PXE and HTTP boot, and iPXE on
// BIOS; the other nodes keep iPXE.
func TestBootFileGRUBNode(t *testing.T) {
	nodes := strings.Replace(testNodesTOML, "[nodes.n001]\n", "[nodes.n001]\nbootloader = \"grub\"\n", 1)
	e := newEnv(t, testConfig{nodes: nodes})
	for _, tc := range []struct {
		mac  string
		mods []dhcpv4.Modifier
		ip   string
		file string
	}{
		{"52:54:00:00:00:01", []dhcpv4.Modifier{withArch(7), withVendor("PXEClient:Arch:00007:UNDI:003001")}, "10.201.0.11", "shimx64.efi"},
		{"52:54:00:00:00:01", []dhcpv4.Modifier{withArch(9)}, "10.201.0.11", "shimx64.efi"},
		{"52:54:00:00:00:01", []dhcpv4.Modifier{withVendor("HTTPClient:Arch:00016:UNDI:003001"), withArch(16)}, "10.201.0.11", "http://10.201.0.1:9873/ipxe-bin/shimx64.efi"},
		{"52:54:00:00:00:01", []dhcpv4.Modifier{withArch(0)}, "10.201.0.11", "undionly.kpxe"},
		{"52:54:00:00:00:02", []dhcpv4.Modifier{withArch(7)}, "10.201.0.102", "snponly.efi"},
	} {
		o := e.do(t, discover(t, tc.mac, tc.mods...))
		checkReply(t, o, dhcpv4.MessageTypeOffer, tc.ip, tc.file)
		if o.event == nil || o.event.Sent != tc.file || o.event.Node == "" {
			t.Errorf("%s: status event %+v, want sent %q", tc.mac, o.event, tc.file)
		}
	}
}

// TestNonUnicastMACsGetNothing (issue 20, Low 11): a chaddr no network card
// has (all zeros, broadcast, multicast) gets no pool address and is not
// listed as an unknown MAC; it is dropped under its own reason.
func TestNonUnicastMACsGetNothing(t *testing.T) {
	e := newEnv(t, testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.110"})
	for _, mac := range []string{"ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "01:00:5e:00:00:01", "33:33:00:00:00:01", "03:00:00:00:00:07"} {
		for _, req := range []*dhcpv4.DHCPv4{
			discover(t, mac, withArch(0), withVendor("PXEClient")),
			request(t, mac, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.201.0.100")))),
		} {
			o := e.do(t, req)
			if o.reply != nil || o.drop != "non_unicast_mac" || o.event != nil {
				t.Errorf("%s %s: reply %v drop %q event %+v, want dropped as non_unicast_mac", mac, o.reqType, o.reply != nil, o.drop, o.event)
			}
		}
	}
	// The pool is untouched: a real MAC gets its first address.
	o := e.do(t, discover(t, "02:00:00:00:00:01", withArch(0)))
	if o.reply == nil || o.reply.YourIPAddr.String() != "10.201.0.100" {
		t.Fatalf("unicast MAC after the refused ones: reply %v drop %q", o.reply, o.drop)
	}
}
