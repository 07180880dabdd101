package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/status"
)

// Lease timing not taken from the config.
const (
	// offerHold is how long an offered address is kept for the client's REQUEST.
	offerHold = time.Minute
	// declineHold is how long a declined address is not handed out.
	declineHold = 10 * time.Minute
)

// exchange is one request with everything the handlers need to answer it.
type exchange struct {
	req      *dhcpv4.DHCPv4
	typ      dhcpv4.MessageType
	mac      string // normalised chaddr
	client   client
	snap     *config.Snapshot
	view     *snapView // derived from snap
	cfg      *config.Server
	serverIP netip.Addr // wwserver.toml address: server identifier, siaddr
	node     *config.Node
	dev      config.NetDev // the node's device with this MAC
	now      time.Time
	src      *net.UDPAddr
	pxePort  bool // arrived on port 4011
}

// relayed reports whether a relay agent forwarded the request.
func (x *exchange) relayed() bool {
	gi := x.req.GatewayIPAddr
	return gi != nil && gi.To4() != nil && !gi.IsUnspecified()
}

// result is a handler's answer: a reply, or the reason for silence.
type result struct {
	reply  *dhcpv4.DHCPv4
	ignore string        // reason label when reply is nil
	event  *status.Event // recorded when set
	// note is logged with the outcome (e.g. why a NAK was sent).
	note string
	// handled marks a message that needs no reply (RELEASE, DECLINE):
	// ignore then names what was done, and it is not counted as a drop.
	handled bool
	// durable is the lease change the reply announces (nil: none).
	durable durable
	// reserved: the address is a nodes.toml reservation.
	reserved bool
	// warn logs the outcome at WARN (something an admin should see).
	warn bool
}

func ignored(reason string) result { return result{ignore: reason} }

// handler answers requests in one mode of operation.
type handler interface {
	handle(x *exchange) result
}

// bootEvent is the status event for a reply that carries a boot file.
func bootEvent(x *exchange, r *dhcpv4.DHCPv4, file string) *status.Event {
	ip := ""
	if y := r.YourIPAddr; y != nil && !y.IsUnspecified() {
		ip = y.String()
	} else if c := x.req.ClientIPAddr; c != nil && !c.IsUnspecified() {
		ip = c.String()
	}
	ev := &status.Event{MAC: x.mac, IP: ip, Stage: status.StageDHCP, Sent: file, Time: x.now}
	if x.node != nil {
		ev.Node = x.node.Name
	}
	return ev
}

// unknownEvent records that an unknown netboot client asked and was ignored,
// so an admin can see its MAC and add it to nodes.toml.
func unknownEvent(x *exchange) *status.Event {
	if x.typ != dhcpv4.MessageTypeDiscover || !x.client.Netboot() {
		return nil
	}
	return &status.Event{MAC: x.mac, Stage: status.StageDHCP, Sent: "UNKNOWN_MAC", Time: x.now}
}

// withBoot adds the boot decision to p for netboot clients.
func withBoot(x *exchange, p *params) {
	if x.client.Netboot() {
		p.boot = decideBoot(x.cfg, x.node, x.client)
	}
}

// ---------------------------------------------------------------------------
// Reservation mode: addresses from nodes.toml, and an optional pool.

type reservationHandler struct {
	leases leaseStore
	m      *metrics
	// guard probes pool addresses before they are offered while the
	// lease table is not trusted (nil: never).
	guard *probeGuard
	// balance leaves pool DISCOVERs of other servers' hash buckets to
	// them (nil: answer all).
	balance *balancer
}

func (h *reservationHandler) handle(x *exchange) result {
	if x.pxePort {
		return ignored("pxe_port_not_proxy")
	}
	switch x.typ {
	case dhcpv4.MessageTypeDiscover:
		return h.discover(x)
	case dhcpv4.MessageTypeRequest:
		return h.request(x)
	case dhcpv4.MessageTypeDecline:
		return h.decline(x)
	case dhcpv4.MessageTypeRelease:
		return h.release(x)
	case dhcpv4.MessageTypeInform:
		return h.inform(x)
	default:
		return ignored("unsupported_type")
	}
}

// errNotTheirs means the requested address is not the client's.
var errNotTheirs = errors.New("requested address is not the client's")

// silence is an assignment failure that is answered with silence, not a NAK.
type silence struct{ reason string }

func (s *silence) Error() string { return s.reason }

// assign finds and claims the client's address. want is the address the
// client asks for (zero: none): with strict (REQUEST) it must be granted
// exactly or errNotTheirs is returned (NAK); otherwise (DISCOVER) it is only
// a preference for pool addresses. A *silence error means the server must
// not answer at all.
func (h *reservationHandler) assign(x *exchange, want netip.Addr, strict bool, state string, expires time.Time) (*params, error) {
	cfg := &x.cfg.DHCP
	p := &params{lease: cfg.LeaseTime.Duration, dns: x.view.dns, domain: cfg.Domain, router: x.view.router, netmask: x.view.netmask}
	node := ""
	if x.node != nil {
		node = x.node.Name
		p.hostname = x.node.Name
	}
	if x.node != nil && x.dev.IPAddr != "" {
		return h.assignReserved(x, p, node, want, strict, state, expires)
	}
	pl := x.pool()
	if pl == nil {
		if x.node != nil {
			return nil, &silence{"node_without_address"}
		}
		return nil, &silence{"unknown_mac"}
	}
	if x.relayed() {
		gi := x.giaddr()
		if !sameSubnet(addrFrom(pl.start), gi, p.netmask) || !sameSubnet(addrFrom(pl.end), gi, p.netmask) {
			return nil, &silence{"pool_not_in_relay_subnet"}
		}
	}
	if strict {
		// REQUEST: exactly the asked address or NAK.
		if !pl.contains(want) {
			return nil, errNotTheirs
		}
		_, d, err := h.leases.claim(want, x.mac, node, state, expires, x.now)
		if errors.Is(err, errSharedUnavailable) {
			return nil, &silence{"shared_leases_unavailable"} // no NAK: the lease may well be good
		}
		if errors.Is(err, ErrSharedBusy) {
			return nil, &silence{"shared_leases_busy"}
		}
		if err != nil {
			return nil, errNotTheirs
		}
		p.yiaddr, p.durable = want, d
		return p, nil
	}
	return h.allocateFree(x, pl, p, node, want, state, expires)
}

// assignReserved gives a node its reserved address, when it may have it
// here (the relay's subnet) and no one else holds it.
func (h *reservationHandler) assignReserved(x *exchange, p *params, node string, want netip.Addr, strict bool, state string, expires time.Time) (*params, error) {
	ip := parseAddr(x.dev.IPAddr)
	if m := parseAddr(x.dev.Netmask); m.IsValid() {
		p.netmask = m
	}
	if gw := parseAddr(x.dev.Gateway); gw.IsValid() {
		p.router = gw
	}
	if x.relayed() && !sameSubnet(ip, x.giaddr(), p.netmask) {
		return nil, &silence{"reservation_not_in_relay_subnet"}
	}
	if strict && want != ip {
		return nil, errNotTheirs
	}
	_, d, err := h.leases.claimReserved(ip, x.mac, node, state, expires, x.now)
	if err != nil {
		return nil, &silence{"reserved_address_in_use"}
	}
	p.yiaddr, p.durable, p.reserved = ip, d, true
	return p, nil
}

// allocateFree picks a free pool address (want, when free), skipping those
// another host answers ARP for (probeAttempts at most).
func (h *reservationHandler) allocateFree(x *exchange, pl *pool, p *params, node string, want netip.Addr, state string, expires time.Time) (*params, error) {
	for attempt := 0; ; attempt++ {
		l, d, err := h.leases.allocate(pl, x.mac, node, want, state, expires, x.now)
		if errors.Is(err, errSharedUnavailable) {
			return nil, &silence{"shared_leases_unavailable"}
		}
		if errors.Is(err, ErrSharedBusy) {
			return nil, &silence{"shared_leases_busy"}
		}
		if err != nil {
			return nil, &silence{"pool_exhausted"}
		}
		// A relayed client's subnet cannot be probed with ARP from here.
		if !h.guard.active(x.now) || x.relayed() || !h.guard.inUse(x.cfg.DHCP.Interface, l.IP, x.now, h.m) {
			p.yiaddr, p.durable = l.IP, d
			return p, nil
		}
		// Someone answers for it: hold it back and try another.
		if ok, _ := h.leases.quarantine(l.IP, x.now.Add(declineHold), x.now); !ok {
			h.leases.forgetOffer(x.mac)
		}
		if attempt+1 == probeAttempts {
			return nil, &silence{"pool_addresses_in_use"}
		}
		want = netip.Addr{}
	}
}

// onLink drops a router outside the client's subnet: UEFI PXE (EDK2)
// fails the whole boot ("PXE-E99 Unexpected network error") when told to
// use an off-link gateway. The note says so in the log.
func onLink(p *params) string {
	if p.router.IsValid() && p.yiaddr.IsValid() && !sameSubnet(p.yiaddr, p.router, p.netmask) {
		note := fmt.Sprintf("router %s is not in %s's subnet; not sent", p.router, p.yiaddr)
		p.router = netip.Addr{}
		return note
	}
	return ""
}

func (h *reservationHandler) discover(x *exchange) result {
	reserved := x.node != nil && x.dev.IPAddr != ""
	if !reserved && !h.balance.answers(x.mac, x.req.NumSeconds, x.now) {
		return ignored("peer_bucket") // another server shares the pool and owns this client
	}
	hint := addrOf(x.req.RequestedIPAddress())
	p, err := h.assign(x, hint, false, StateOffered, x.now.Add(offerHold))
	if err != nil {
		return h.silent(x, err)
	}
	return h.answer(x, dhcpv4.MessageTypeOffer, p)
}

// silent turns an assignment error into an ignore result.
func (h *reservationHandler) silent(x *exchange, err error) result {
	var s *silence
	if !errors.As(err, &s) {
		return ignored("no_address")
	}
	r := ignored(s.reason)
	if s.reason == "unknown_mac" {
		r.event = unknownEvent(x)
	}
	return r
}

// answer builds an OFFER or ACK with the boot file for netboot clients.
func (h *reservationHandler) answer(x *exchange, typ dhcpv4.MessageType, p *params) result {
	withBoot(x, p)
	note := onLink(p)
	r := buildReply(x, typ, p)
	res := result{reply: r, note: note, durable: p.durable, reserved: p.reserved}
	if p.boot.File != "" {
		res.event = bootEvent(x, r, p.boot.File)
	}
	return res
}

func (h *reservationHandler) request(x *exchange) result {
	sid := addrOf(x.req.ServerIdentifier())
	if sid.IsValid() && sid != x.serverIP {
		// SELECTING another server's offer: drop ours (RFC 2131 4.3.2).
		h.leases.forgetOffer(x.mac)
		return ignored("other_server")
	}
	want := addrOf(x.req.RequestedIPAddress())
	if !want.IsValid() {
		want = addrOf(x.req.ClientIPAddr) // RENEWING / REBINDING
	}
	if !want.IsValid() {
		return ignored("no_requested_address")
	}
	p, err := h.assign(x, want, true, StateBound, x.now.Add(x.cfg.DHCP.LeaseTime.Duration))
	if errors.Is(err, errNotTheirs) {
		return result{reply: buildNAK(x, "requested address not available"),
			note: fmt.Sprintf("requested %s is not this client's", want)}
	}
	if err != nil {
		return h.silent(x, err)
	}
	return h.answer(x, dhcpv4.MessageTypeAck, p)
}

func (h *reservationHandler) decline(x *exchange) result {
	if sid := addrOf(x.req.ServerIdentifier()); sid.IsValid() && sid != x.serverIP {
		return ignored("other_server")
	}
	ip := addrOf(x.req.RequestedIPAddress())
	if !ip.IsValid() {
		h.m.declines.WithLabelValues("unknown_lease").Inc()
		return ignored("decline_unknown_lease")
	}
	if n, reserved := x.snap.Nodes.ByIP[ip.String()]; reserved {
		// Anyone can send a DECLINE: it must not take a node off the network.
		h.m.declines.WithLabelValues("reservation_kept").Inc()
		return result{ignore: "decline_of_reservation", handled: true, warn: true,
			note: fmt.Sprintf("DECLINE of %s, reserved for node %s in nodes.toml, ignored: the reservation stays", ip, n.Name)}
	}
	ok, _ := h.leases.decline(ip, x.mac, x.now.Add(declineHold), x.now)
	if !ok {
		if l, found := h.leases.lookupIP(ip); found && l.MAC == x.mac && l.State != StateDeclined {
			h.m.declines.WithLabelValues("quarantine_full").Inc()
			return result{ignore: "decline_quarantine_full", handled: true, warn: true,
				note: fmt.Sprintf("DECLINE of %s not honoured: %d addresses are already held back", ip, maxQuarantined)}
		}
		h.m.declines.WithLabelValues("unknown_lease").Inc()
		return ignored("decline_unknown_lease")
	}
	h.m.declines.WithLabelValues("quarantined").Inc()
	return result{ignore: "declined", handled: true, warn: true, note: fmt.Sprintf("address %s declined; held back for %s", ip, declineHold)}
}

func (h *reservationHandler) release(x *exchange) result {
	if sid := addrOf(x.req.ServerIdentifier()); sid.IsValid() && sid != x.serverIP {
		return ignored("other_server")
	}
	ip := addrOf(x.req.ClientIPAddr)
	if !ip.IsValid() {
		return ignored("release_unknown_lease")
	}
	if ok, _ := h.leases.release(ip, x.mac); !ok {
		return ignored("release_unknown_lease")
	}
	return result{ignore: "released", handled: true}
}

// inform answers DHCPINFORM: configuration only, no address, no lease.
func (h *reservationHandler) inform(x *exchange) result {
	if x.node == nil && x.pool() == nil {
		return ignored("unknown_mac")
	}
	if !addrOf(x.req.ClientIPAddr).IsValid() {
		return ignored("inform_without_ciaddr")
	}
	cfg := &x.cfg.DHCP
	p := &params{dns: x.view.dns, domain: cfg.Domain, router: x.view.router, netmask: x.view.netmask}
	if x.node != nil {
		p.hostname = x.node.Name
		if m := parseAddr(x.dev.Netmask); m.IsValid() {
			p.netmask = m
		}
		if gw := parseAddr(x.dev.Gateway); gw.IsValid() {
			p.router = gw
		}
	}
	return h.answer(x, dhcpv4.MessageTypeAck, p)
}

// ---------------------------------------------------------------------------
// Proxy mode: another server hands out addresses; we add boot information
// for PXE and HTTP-boot clients of known nodes.

type proxyHandler struct{}

func (proxyHandler) handle(x *exchange) result {
	if !x.client.PXE && !x.client.HTTP {
		return ignored("proxy_not_pxe")
	}
	if x.node == nil {
		// On a shared segment, only the nodes in nodes.toml are ours to boot.
		r := ignored("unknown_mac")
		r.event = unknownEvent(x)
		return r
	}
	var typ dhcpv4.MessageType
	switch {
	case x.typ == dhcpv4.MessageTypeDiscover && !x.pxePort:
		typ = dhcpv4.MessageTypeOffer
	case x.pxePort && (x.typ == dhcpv4.MessageTypeRequest || x.typ == dhcpv4.MessageTypeInform):
		// ProxyDHCP request to the boot server port (PXE spec, iPXE).
		typ = dhcpv4.MessageTypeAck
	case x.typ == dhcpv4.MessageTypeRequest:
		return ignored("proxy_request_for_dhcp_server")
	default:
		return ignored("unsupported_type")
	}
	p := &params{proxy: true, boot: decideBoot(x.cfg, x.node, x.client)}
	if p.boot.File == "" {
		return ignored("no_boot_file")
	}
	r := buildReply(x, typ, p)
	return result{reply: r, event: bootEvent(x, r, p.boot.File)}
}

// ---------------------------------------------------------------------------
// Address helpers.

func (x *exchange) giaddr() netip.Addr { return addrOf(x.req.GatewayIPAddr) }

// pool returns the configured pool, or nil.
func (x *exchange) pool() *pool { return x.view.pool }

// snapView is what the handlers derive from one config snapshot: parsed
// once per snapshot (Server.viewOf), not once per packet.
type snapView struct {
	snap     *config.Snapshot
	serverIP netip.Addr // wwserver.toml address; invalid: not an IPv4 address
	pool     *pool      // nil: no pool configured
	dns      []netip.Addr
	router   netip.Addr
	netmask  netip.Addr
	opts     replyOptions
}

func newSnapView(snap *config.Snapshot) *snapView {
	d := &snap.Server.DHCP
	v := &snapView{snap: snap, serverIP: parseAddr(snap.Server.Address), dns: parseAddrs(d.DNS),
		router: parseAddr(d.Router), netmask: parseAddr(d.Netmask)}
	v.pool = newPool(d, v.serverIP, v.netmask, snap.Nodes)
	v.opts = newReplyOptions(v, d)
	return v
}

// newPool returns the pool of d, or nil.
func newPool(d *config.DHCP, server, mask netip.Addr, nodes *config.Nodes) *pool {
	if d.RangeStart == "" || d.RangeEnd == "" {
		return nil
	}
	start, end := parseAddr(d.RangeStart), parseAddr(d.RangeEnd)
	if !start.IsValid() || !end.IsValid() || u32(start) > u32(end) {
		return nil
	}
	return &pool{start: u32(start), end: u32(end), skip: func(ip netip.Addr) bool {
		if ip == server {
			return true
		}
		if mask.IsValid() {
			m := u32(mask)
			if v := u32(ip); m != 0xffffffff && m != 0xfffffffe && (v&^m == 0 || v&^m == ^m) {
				return true // network or broadcast address
			}
		}
		// The key in a stack buffer: a map index by string(bytes) does
		// not allocate (this runs for every candidate address).
		var buf [len("255.255.255.255")]byte
		_, reserved := nodes.ByIP[string(ip.AppendTo(buf[:0]))]
		return reserved
	}}
}

func sameSubnet(a, b, mask netip.Addr) bool {
	if !a.Is4() || !b.Is4() {
		return false
	}
	m := uint32(0xffffff00)
	if mask.Is4() {
		m = u32(mask)
	}
	return u32(a)&m == u32(b)&m
}

// addrOf converts a packet address; zero and invalid give the zero Addr.
func addrOf(ip net.IP) netip.Addr {
	v4 := ip.To4()
	if v4 == nil {
		return netip.Addr{}
	}
	a := netip.AddrFrom4([4]byte(v4))
	if a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

func parseAddr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}
	}
	return a
}

func parseAddrs(ss []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		if a := parseAddr(s); a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}
