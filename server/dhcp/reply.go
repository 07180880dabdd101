package dhcp

import (
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/wwcluster/ww/server/config"
)

// Ports (RFC 2131; PXE boot server discovery).
const (
	serverPort = 67
	clientPort = 68
	// PXEPort is where PXE clients send ProxyDHCP requests (boot server discovery).
	PXEPort = 4011
)

// pxeVendorOptions is option 43 for PXE clients: PXE_DISCOVERY_CONTROL
// (sub-option 6) = 8, "boot from the file name in this packet, no boot
// server discovery or menu", then End (the PXE spec ends the list with
// 255). With it EDK2 (OVMF) treats the offer as "PXE10" and, because the
// offer carries a boot file, skips the prompt and discovery
// (PxeBcSelectBootPrompt) and boots the file; without option 43, EDK2 would
// classify a PXEClient offer as "BINL" and ask port 4011 again.
var pxeVendorOptions = append(dhcpv4.Options{pxeDiscoveryControl: {8}}.ToBytes(), optionEnd)

// ipxeNoProxyWait is option 175 (iPXE's encapsulated options) for iPXE
// clients of a DHCP (not ProxyDHCP) reply: no-pxedhcp (176) = 1. Without it
// iPXE keeps collecting ProxyDHCP offers for DHCP_DISC_PROXY_TIMEOUT_SEC
// after our offer unless the offer itself looks like a PXE offer.
var ipxeNoProxyWait = dhcpv4.Options{ipxeNoPXEDHCP: {1}}.ToBytes()

// Sub-options used in encapsulated option lists.
const (
	pxeDiscoveryControl = 6   // in option 43 (PXE)
	ipxeNoPXEDHCP       = 176 // in option 175 (iPXE)
	optionEnd           = 255 // ends an option list
)

// params is everything a reply may carry besides the header fields taken
// from the request. The zero value means "no such option".
type params struct {
	yiaddr   netip.Addr
	netmask  netip.Addr
	router   netip.Addr
	dns      []netip.Addr
	domain   string
	hostname string
	lease    time.Duration // 0: no lease time options (INFORM, proxy)
	boot     bootDecision
	// proxy marks a ProxyDHCP reply: boot information only.
	proxy bool
	// durable is the lease change behind yiaddr (nil: none to wait for);
	// reserved: yiaddr is a nodes.toml reservation.
	durable  durable
	reserved bool
}

// replyOptions are the encoded values of the reply options that depend
// only on the config snapshot, made once per snapshot by the library's own
// option types (so the bytes are what UpdateOption would store). Replies
// share these slices; nothing writes to them.
type replyOptions struct {
	serverID   []byte // 54
	tftpServer []byte // 66: the server address as text
	netmask    []byte // 1 for snapView.netmask
	router     []byte // 3 for snapView.router
	dns        []byte // 6 for snapView.dns
	domain     []byte // 15 for dhcp.domain
	lease      time.Duration
	leaseTimes [3][]byte // 51, 58, 59 for lease
}

func newReplyOptions(v *snapView, d *config.DHCP) replyOptions {
	o := replyOptions{domain: dhcpv4.OptDomainName(d.Domain).Value.ToBytes(), lease: d.LeaseTime.Duration}
	if v.serverIP.IsValid() {
		o.serverID = dhcpv4.OptServerIdentifier(v.serverIP.AsSlice()).Value.ToBytes()
		o.tftpServer = dhcpv4.OptTFTPServerName(v.serverIP.String()).Value.ToBytes()
	}
	if v.netmask.IsValid() {
		o.netmask = dhcpv4.OptSubnetMask(net.IPMask(v.netmask.AsSlice())).Value.ToBytes()
	}
	if v.router.IsValid() {
		o.router = dhcpv4.OptRouter(v.router.AsSlice()).Value.ToBytes()
	}
	o.dns = dhcpv4.OptDNS(asIPs(v.dns)...).Value.ToBytes()
	for i, opt := range leaseOptions(o.lease) {
		o.leaseTimes[i] = opt.Value.ToBytes()
	}
	return o
}

// leaseOptions are the lease time (51), renewal (58) and rebinding (59)
// time options for lease.
func leaseOptions(lease time.Duration) [3]dhcpv4.Option {
	return [3]dhcpv4.Option{dhcpv4.OptIPAddressLeaseTime(lease), dhcpv4.OptRenewTimeValue(lease / 2),
		dhcpv4.OptRebindingTimeValue(lease * 7 / 8)}
}

func asIPs(as []netip.Addr) []net.IP {
	ips := make([]net.IP, len(as))
	for i, a := range as {
		ips[i] = a.AsSlice()
	}
	return ips
}

// setOption stores cached as the value of code when same (the value is the
// snapshot's, which cached was encoded from), else opt's value.
func setOption(r *dhcpv4.DHCPv4, code dhcpv4.OptionCode, same bool, cached []byte, opt func() dhcpv4.Option) {
	if same && cached != nil {
		r.Options[code.Code()] = cached
		return
	}
	r.UpdateOption(opt())
}

// newReply starts a reply to req (RFC 2131 table 3): xid, flags, chaddr
// and giaddr from the request; relay agent information (82) and client
// identifier (61, RFC 6842) copied. It does not draw a random transaction
// id the way dhcpv4.New does.
func newReply(x *exchange, typ dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	req := x.req
	r := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		ClientHWAddr:  req.ClientHWAddr,
		Options:       make(dhcpv4.Options, 16), // sized for a full OFFER: no map growth
	}
	if gi := req.GatewayIPAddr; gi != nil && gi.To4() != nil {
		r.GatewayIPAddr = gi
	}
	if typ == dhcpv4.MessageTypeAck {
		if ci := req.ClientIPAddr; ci != nil && ci.To4() != nil {
			r.ClientIPAddr = ci
		}
	}
	r.UpdateOption(dhcpv4.OptMessageType(typ))
	setOption(r, dhcpv4.OptionServerIdentifier, x.serverIP == x.view.serverIP, x.view.opts.serverID,
		func() dhcpv4.Option { return dhcpv4.OptServerIdentifier(x.serverIP.AsSlice()) })
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionRelayAgentInformation, dhcpv4.OptionClientIdentifier} {
		if v := req.Options.Get(code); v != nil {
			r.UpdateOption(dhcpv4.OptGeneric(code, v))
		}
	}
	return r
}

// buildReply makes an OFFER or ACK. All reply options are set here.
func buildReply(x *exchange, typ dhcpv4.MessageType, p *params) *dhcpv4.DHCPv4 {
	r := newReply(x, typ)
	v := x.view
	if p.yiaddr.IsValid() {
		r.YourIPAddr = p.yiaddr.AsSlice()
	}
	if !p.proxy {
		if p.netmask.IsValid() {
			setOption(r, dhcpv4.OptionSubnetMask, p.netmask == v.netmask, v.opts.netmask,
				func() dhcpv4.Option { return dhcpv4.OptSubnetMask(net.IPMask(p.netmask.AsSlice())) })
		}
		if p.router.IsValid() {
			setOption(r, dhcpv4.OptionRouter, p.router == v.router, v.opts.router,
				func() dhcpv4.Option { return dhcpv4.OptRouter(p.router.AsSlice()) })
		}
		if len(p.dns) > 0 {
			setOption(r, dhcpv4.OptionDomainNameServer, slices.Equal(p.dns, v.dns), v.opts.dns,
				func() dhcpv4.Option { return dhcpv4.OptDNS(asIPs(p.dns)...) })
		}
		if p.domain != "" {
			setOption(r, dhcpv4.OptionDomainName, p.domain == x.cfg.DHCP.Domain, v.opts.domain,
				func() dhcpv4.Option { return dhcpv4.OptDomainName(p.domain) })
		}
		if p.hostname != "" {
			r.UpdateOption(dhcpv4.OptHostName(p.hostname))
		}
		if p.lease > 0 {
			if p.lease == v.opts.lease {
				for i, code := range [3]dhcpv4.OptionCode{dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue} {
					r.Options[code.Code()] = v.opts.leaseTimes[i]
				}
			} else {
				for _, opt := range leaseOptions(p.lease) {
					r.UpdateOption(opt)
				}
			}
		}
	}
	if p.boot.File != "" {
		r.ServerIPAddr = x.serverIP.AsSlice() // siaddr / next-server
		r.BootFileName = p.boot.File
		setOption(r, dhcpv4.OptionTFTPServerName, x.serverIP == v.serverIP, v.opts.tftpServer,
			func() dhcpv4.Option { return dhcpv4.OptTFTPServerName(x.serverIP.String()) })
		r.UpdateOption(dhcpv4.OptBootFileName(p.boot.File))
		if x.client.IPXE && !p.proxy {
			// We are the DHCP server: iPXE need not wait for ProxyDHCP offers.
			r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(optionIPXEEncap), ipxeNoProxyWait))
		}
		switch p.boot.Vendor {
		case vendorPXE:
			r.UpdateOption(dhcpv4.OptClassIdentifier(vendorPXE))
			r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeVendorOptions))
		case vendorHTTP:
			r.UpdateOption(dhcpv4.OptClassIdentifier(vendorHTTP))
		}
	}
	return r
}

// buildNAK makes a DHCPNAK.
func buildNAK(x *exchange, msg string) *dhcpv4.DHCPv4 {
	r := newReply(x, dhcpv4.MessageTypeNak)
	r.UpdateOption(dhcpv4.OptMessage(msg))
	return r
}

// replyDest is where a reply goes (RFC 2131 section 4.1):
//   - giaddr set: the relay agent, port 67 (a NAK with the broadcast bit);
//   - a request on the PXE port: back to its source;
//   - NAK: broadcast;
//   - ciaddr set (renewing, INFORM): unicast to ciaddr:68;
//   - otherwise broadcast. (Unicasting to yiaddr before the client has its
//     address would need a static ARP entry; every client accepts a
//     broadcast, which is what smee and many relays do.)
func replyDest(x *exchange, r *dhcpv4.DHCPv4) *net.UDPAddr {
	if gi := x.req.GatewayIPAddr; gi != nil && !gi.IsUnspecified() {
		if r.MessageType() == dhcpv4.MessageTypeNak {
			r.SetBroadcast()
		}
		return &net.UDPAddr{IP: gi, Port: serverPort}
	}
	if x.pxePort && x.src != nil {
		return &net.UDPAddr{IP: x.src.IP, Port: x.src.Port}
	}
	if r.MessageType() != dhcpv4.MessageTypeNak {
		if ci := x.req.ClientIPAddr; ci != nil && !ci.IsUnspecified() {
			return &net.UDPAddr{IP: ci, Port: clientPort}
		}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: clientPort}
}
