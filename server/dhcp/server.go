// Package dhcp is wwserver's built-in DHCPv4 server.
//
// Two modes share one packet path: "reservation" hands out the addresses of
// nodes.toml (and, optionally, pool addresses to unknown MACs); "proxy"
// only adds boot information for PXE clients beside another DHCP server.
// Each mode is a handler behind one small interface; reply options are
// built in one place (reply.go) and the boot file comes from a decision
// table (boot.go).
//
// One goroutine per socket reads packets and, as long as handling cannot
// block, handles them itself (the kernel's receive buffer is the bounded
// queue). While pool addresses must be probed (up to 200 ms each), or
// when leases live in a shared store (etcd round trips), packets go
// instead to a bounded queue served by a fixed pool of workers
// (dhcp.workers); when it is full packets are dropped and counted, never
// queued without bound. Malformed packets are dropped and counted; a panic
// while handling is recovered and counted.
//
// Leases live behind leaseStore (store.go). The files backend keeps them
// in memory and appends every change that matters to StateDir/leases.journal,
// fsynced before the reply that depends on it is sent (group commit), and
// compacts the journal into leases.json in the background.
package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/status"
)

// Options configure a Server.
type Options struct {
	Store config.Current
	// StateDir holds leases.json; "" keeps leases in memory only.
	StateDir string
	Status   status.Recorder // may be nil
	Log      *slog.Logger    // nil: slog.Default()
	// Registerer receives the metrics; nil: a private registry.
	Registerer prometheus.Registerer
	// QueueSize bounds the packets waiting for a worker; 0: 64 per worker.
	QueueSize int
	// PXEPort is the ProxyDHCP boot-server port opened in proxy mode;
	// 0 means 4011, negative disables it.
	PXEPort int
	// Shared, when set, is the pool's lease database shared with other
	// servers (etcd); StateDir then holds no leases.
	Shared SharedLeases
}

// Server is the DHCP server. Create it with New and start it with Run.
type Server struct {
	store  config.Current
	status status.Recorder
	log    *slog.Logger
	leases leaseStore
	guard  *probeGuard // nil unless leases were lost at load
	// storeBlocks: lease operations may wait on the network (a shared
	// store), so packets always go to the workers.
	storeBlocks bool
	m           *metrics
	handlers    map[string]handler
	queueSize   int
	pxePort     int
	staleAfter  time.Duration // staleAfter; tests change it
	view        atomic.Pointer[snapView]

	ready     chan struct{}
	readyOnce sync.Once
	addrMu    sync.Mutex
	addrs     []net.Addr
}

type nopRecorder struct{}

func (nopRecorder) Record(status.Event) {}

// New creates a server and loads StateDir/leases.json.
func New(o Options) (*Server, error) {
	if o.Store == nil {
		return nil, errors.New("dhcp: no config store")
	}
	s := &Server{
		store:     o.Store,
		status:    o.Status,
		log:       o.Log,
		queueSize: o.QueueSize,
		pxePort:   o.PXEPort,
		ready:     make(chan struct{}),

		staleAfter: staleAfter,
	}
	if s.status == nil {
		s.status = nopRecorder{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.pxePort == 0 {
		s.pxePort = PXEPort
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg, func() int { return s.leases.inUse(time.Now()) })
	if err != nil {
		return nil, err
	}
	s.m = m
	var bal *balancer
	if pp, ok := o.Shared.(PoolPeers); ok {
		if bal, err = newBalancer(pp, reg); err != nil {
			return nil, fmt.Errorf("dhcp: register metrics: %w", err)
		}
	}
	if o.Shared != nil {
		s.leases = newSharedStore(o.Shared, s.log)
		s.storeBlocks = true // pool changes wait for the shared database
	} else {
		fs, err := openFileStore(o.StateDir, s.log, m.persistErrors.Inc)
		if err != nil {
			return nil, fmt.Errorf("dhcp: %w", err)
		}
		s.leases = fs
	}
	if lost := s.leases.lost(); lost != "" {
		// Addresses may be in use that the table does not know: probe
		// pool addresses until every lease given before has run out.
		lt := o.Store.Current().Server.DHCP.LeaseTime.Duration
		s.guard = &probeGuard{prober: arpProber{}, until: time.Now().Add(lt), reason: lost}
		s.log.Warn("dhcp: pool addresses are probed with ARP before being offered", "until", s.guard.until.Format(time.RFC3339))
	}
	s.handlers = map[string]handler{
		config.ModeReservation: &reservationHandler{leases: s.leases, m: s.m, guard: s.guard, balance: bal},
		config.ModeProxy:       proxyHandler{},
	}
	return s, nil
}

// Ready is closed once Run has bound its sockets.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the bound socket addresses (after Ready).
func (s *Server) Addrs() []net.Addr {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return append([]net.Addr(nil), s.addrs...)
}

// LeaseByIP returns the MAC and node name holding ip (an active offered or
// bound lease). The TFTP server uses it to name the client of a transfer.
func (s *Server) LeaseByIP(ip string) (mac, node string, ok bool) {
	a := parseAddr(ip)
	if !a.IsValid() {
		return "", "", false
	}
	l, found := s.leases.lookupIP(a)
	if !found || l.State == StateDeclined || !l.Active(time.Now()) {
		return "", "", false
	}
	return l.MAC, l.Node, true
}

// Leases returns a copy of all leases, sorted by address.
func (s *Server) Leases() []Lease {
	return s.leases.snapshot(true)
}

// Run binds dhcp.listen on dhcp.interface (and, in proxy mode, the PXE
// port) and serves until ctx is done; then it closes the sockets, lets the
// workers finish and writes the leases. It also answers IPv6 router
// solicitations on the interface (routeradv.go) unless
// answer_router_solicitations is false. Listen address, interface, the
// worker count and answer_router_solicitations are read once here;
// everything else per packet.
func (s *Server) Run(ctx context.Context) error {
	cfg := s.store.Current().Server.DHCP
	conn, err := listenUDP(cfg.Interface, cfg.Listen)
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	conns := []servedConn{{conn: conn}}
	if cfg.Mode == config.ModeProxy && s.pxePort > 0 {
		host, _, err := net.SplitHostPort(cfg.Listen)
		if err == nil {
			pc, err := listenUDP(cfg.Interface, net.JoinHostPort(host, strconv.Itoa(s.pxePort)))
			if err != nil {
				s.log.Warn("dhcp: PXE boot server port not available; ProxyDHCP answers on port 67 only", "err", err)
			} else {
				conns = append(conns, servedConn{conn: pc, pxePort: true})
			}
		}
	}
	s.addrMu.Lock()
	for _, c := range conns {
		s.addrs = append(s.addrs, c.conn.LocalAddr())
	}
	s.addrMu.Unlock()
	s.log.Info("dhcp: serving", "interface", cfg.Interface, "listen", cfg.Listen, "mode", cfg.Mode,
		"workers", cfg.Workers, "pxe_port", len(conns) > 1)
	switch ra := cfg.AnswerRouterSolicitations; {
	case ra == config.AnswerRSNever:
		s.log.Info("dhcp: not answering IPv6 router solicitations (answer_router_solicitations = false); on a network without an IPv6 router iPXE waits ~16 s for one")
	case cfg.Interface == "":
		level := slog.LevelInfo
		if ra == config.AnswerRSAlways {
			level = slog.LevelWarn
		}
		s.log.Log(ctx, level, "dhcp: not answering IPv6 router solicitations: dhcp.interface is not set, so there is no link to answer on; "+
			"on a network without an IPv6 router iPXE waits ~16 s for one (set dhcp.interface)", "answer_router_solicitations", ra)
	default:
		raDone := make(chan struct{})
		defer func() { <-raDone }()
		go func() {
			defer close(raDone)
			answerRouterSolicitations(ctx, cfg.Interface, ra, s.log, s.m)
		}()
	}
	return s.serve(ctx, conns, cfg.Workers)
}

// servedConn is a socket and whether it is the PXE boot-server port.
type servedConn struct {
	conn    net.PacketConn
	pxePort bool
}

// datagramReader yields the datagrams of one socket, one at a time; the
// returned bytes are valid until the next call.
type datagramReader interface {
	ReadFrom() ([]byte, *net.UDPAddr, error)
}

// packetWriter sends a reply (net.PacketConn has this method).
type packetWriter interface {
	WriteTo(b []byte, addr net.Addr) (int, error)
}

// ioFor returns how c is read and written: raw system calls for a UDP
// socket on Linux (rawio_linux.go), else c's own methods.
func ioFor(c net.PacketConn) (datagramReader, packetWriter) {
	if r, w, ok := newRawIO(c); ok {
		return r, w
	}
	return &connReader{c: c, buf: make([]byte, maxPacket+1)}, c
}

// connReader reads through net.PacketConn.ReadFrom.
type connReader struct {
	c   net.PacketConn
	buf []byte
}

func (r *connReader) ReadFrom() ([]byte, *net.UDPAddr, error) {
	n, addr, err := r.c.ReadFrom(r.buf)
	if err != nil {
		return nil, nil, err
	}
	src, _ := addr.(*net.UDPAddr)
	return r.buf[:n], src, nil
}

// packet is one datagram queued for a worker.
type packet struct {
	data    []byte
	src     *net.UDPAddr
	conn    packetWriter
	pxePort bool
	at      time.Time // when it was read (queued packets)
}

// staleAfter: a packet that waited this long for a worker is dropped
// unanswered (reason "stale"). In a storm the queue is where overload
// shows: answering seconds-old requests, whose clients have given up or
// sent them again, would make every answer late; dropping them keeps the
// answers to the rest on time (a client retransmits, firmware after 4 s).
const staleAfter = time.Second

// serve runs the read loops, the worker pool and the lease writer on conns
// until ctx is done. It closes conns.
func (s *Server) serve(ctx context.Context, conns []servedConn, workers int) error {
	if workers < 1 {
		workers = 1
	}
	qs := s.queueSize
	if qs <= 0 {
		qs = 64 * workers
	}
	jobs := make(chan packet, qs)
	s.readyOnce.Do(func() { close(s.ready) })

	var storeWG sync.WaitGroup
	sctx, stopStore := context.WithCancel(context.Background())
	storeWG.Add(1)
	go func() {
		defer storeWG.Done()
		s.leases.run(sctx)
	}()

	var workWG sync.WaitGroup
	for i := 0; i < workers; i++ {
		workWG.Add(1)
		go func() {
			defer workWG.Done()
			for p := range jobs {
				if time.Since(p.at) > s.staleAfter {
					s.m.dropped.WithLabelValues("stale").Inc()
					continue
				}
				s.handlePacket(p)
			}
		}()
	}

	var readWG sync.WaitGroup
	for _, c := range conns {
		readWG.Add(1)
		go func(c servedConn) {
			defer readWG.Done()
			s.readLoop(ctx, c, jobs)
		}(c)
	}

	<-ctx.Done()
	for _, c := range conns {
		c.conn.Close()
	}
	readWG.Wait()
	close(jobs)
	workWG.Wait()
	stopStore() // writes what the workers left, then leases.json
	storeWG.Wait()
	s.log.Info("dhcp: stopped")
	return nil
}

// maxPacket bounds a DHCP datagram; larger ones are dropped as oversize.
const maxPacket = 4096

func (s *Server) readLoop(ctx context.Context, c servedConn, jobs chan<- packet) {
	in, out := ioFor(c.conn)
	for {
		data, src, err := in.ReadFrom()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.m.dropped.WithLabelValues("read_error").Inc()
			s.log.Warn("dhcp: read", "err", err)
			select { // don't spin on a persistent error
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if len(data) > maxPacket {
			s.m.dropped.WithLabelValues("oversize").Inc()
			continue
		}
		p := packet{data: append([]byte(nil), data...), src: src, conn: out, pxePort: c.pxePort}
		if !s.storeBlocks && !s.guard.active(time.Now()) {
			// Nothing in the handling can block (no probes, no shared
			// store; the lease journal is waited for asynchronously; status
			// recorders never block): handle it here, saving two goroutine
			// hand-offs per packet. The socket's receive buffer is the
			// bounded queue.
			s.handlePacket(p)
			continue
		}
		p.at = time.Now()
		select {
		case jobs <- p:
		default:
			s.m.dropped.WithLabelValues("queue_full").Inc()
		}
	}
}

// handlePacket runs in a worker: decide, then send and record, at once
// or, when the reply depends on a lease change, once the change is
// durable (on the lease store's goroutine). It never panics.
func (s *Server) handlePacket(p packet) {
	defer s.recoverPanic(p)
	snap := s.store.Current()
	o := s.decide(p.data, p.src, p.pxePort, snap, time.Now())
	if o.reqType != "" {
		byType(&s.m.receivedByType, o.typ).Inc()
	}
	if o.durable != nil && o.reply != nil {
		o.durable.whenDurable(func(err error) {
			defer s.recoverPanic(p)
			if err != nil && !o.reserved {
				// Not on disk: a crash could hand the address to another
				// MAC, so the client must not be told it has it.
				s.m.dropped.WithLabelValues("lease_not_stored").Inc()
				return
			}
			s.finish(p, &o)
		})
		return
	}
	s.finish(p, &o)
}

func (s *Server) recoverPanic(p packet) {
	if r := recover(); r != nil {
		s.m.dropped.WithLabelValues("panic").Inc()
		s.log.Error("dhcp: panic while handling a packet", "panic", r, "src", p.src, "stack", string(debug.Stack()))
	}
}

// finish sends o's reply (if any), logs and records its event.
func (s *Server) finish(p packet, o *outcome) {
	if o.reply == nil {
		if !o.handled {
			s.m.dropped.WithLabelValues(o.drop).Inc()
		}
		if o.x != nil && o.warn {
			s.log.Warn("dhcp: "+o.reqType, "mac", o.x.mac, "src", p.src, "outcome", o.drop, "note", o.note)
		} else if o.x != nil {
			s.log.Debug("dhcp: no reply", "type", o.reqType, "mac", o.x.mac, "reason", o.drop, "note", o.note)
		} else {
			s.log.Debug("dhcp: dropped packet", "src", p.src, "reason", o.drop, "err", o.err)
		}
	} else {
		typ := o.reply.MessageType()
		if _, err := p.conn.WriteTo(o.reply.ToBytes(), o.dst); errors.Is(err, net.ErrClosed) {
			return // shutting down: queued requests are dropped
		} else if err != nil {
			s.m.dropped.WithLabelValues("send_error").Inc()
			s.log.Warn("dhcp: send reply", "type", typ.String(), "dst", o.dst, "err", err)
		} else {
			byType(&s.m.sentByType, typ).Inc()
			lvl := slog.LevelDebug
			if typ == dhcpv4.MessageTypeAck || typ == dhcpv4.MessageTypeNak {
				lvl = slog.LevelInfo
			}
			// Checked first: boxing the attributes allocates even when disabled.
			if s.log.Enabled(context.Background(), lvl) {
				s.log.Log(context.Background(), lvl, "dhcp: reply", "type", typ.String(), "mac", o.x.mac,
					"node", nodeName(o.x), "yiaddr", o.reply.YourIPAddr, "file", o.reply.BootFileName, "dst", o.dst, "note", o.note)
			}
		}
	}
	if o.event != nil {
		s.status.Record(*o.event)
	}
}

// outcome is the decision for one datagram.
type outcome struct {
	reqType string // request message type label ("" when unparsable)
	typ     dhcpv4.MessageType
	x       *exchange
	reply   *dhcpv4.DHCPv4
	dst     *net.UDPAddr
	drop    string // reason when reply is nil
	handled bool   // no reply needed (RELEASE, DECLINE): not a drop
	note    string
	err     error
	event   *status.Event
	// durable is the lease change the reply announces; the reply waits
	// for it. reserved: the address comes from nodes.toml, so the reply
	// may go even when the change could not be stored.
	durable  durable
	reserved bool
	warn     bool // log at WARN
}

// viewOf returns what the handlers derive from snap, computed once per
// snapshot (concurrent first callers may each compute it; the results are
// equal).
func (s *Server) viewOf(snap *config.Snapshot) *snapView {
	if v := s.view.Load(); v != nil && v.snap == snap {
		return v
	}
	v := newSnapView(snap)
	s.view.Store(v)
	return v
}

// maxHops drops requests that looped through too many relays.
const maxHops = 16

// decide turns a datagram into a reply (or a reason for silence). It has no
// I/O besides the lease table, so tests and the fuzzer call it directly.
func (s *Server) decide(data []byte, src *net.UDPAddr, pxePort bool, snap *config.Snapshot, now time.Time) outcome {
	req, err := dhcpv4.FromBytes(data)
	if err != nil {
		return outcome{drop: "malformed", err: err}
	}
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return outcome{drop: "not_request"}
	}
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return outcome{drop: "bad_hwaddr"}
	}
	if !unicastHW(req.ClientHWAddr) {
		// No network card has it: forged or broken. It must not take a
		// pool address or show up as an unknown MAC.
		return outcome{drop: "non_unicast_mac"}
	}
	if req.HopCount > maxHops {
		return outcome{drop: "too_many_hops"}
	}
	typ := req.MessageType()
	if typ == dhcpv4.MessageTypeNone {
		return outcome{drop: "bootp"}
	}
	o := outcome{reqType: typeLabel(typ), typ: typ}
	cfg := snap.Server
	if !cfg.DHCP.Enabled {
		o.drop = "disabled"
		return o
	}
	h, ok := s.handlers[cfg.DHCP.Mode]
	if !ok {
		o.drop = "bad_mode"
		return o
	}
	view := s.viewOf(snap)
	serverIP := view.serverIP
	if !serverIP.IsValid() {
		o.drop = "bad_server_address"
		return o
	}
	mac := req.ClientHWAddr.String()
	x := &exchange{
		req: req, typ: typ, mac: mac, client: classify(req, mac),
		snap: snap, view: view, cfg: cfg, serverIP: serverIP, now: now, src: src, pxePort: pxePort,
	}
	if n := snap.Nodes.ByMAC[mac]; n != nil {
		x.node = n
		for _, d := range n.Network {
			if d.HWAddr == mac {
				x.dev = d
				break
			}
		}
	}
	o.x = x
	res := h.handle(x)
	o.event, o.note, o.handled = res.event, res.note, res.handled
	o.durable, o.reserved, o.warn = res.durable, res.reserved, res.warn
	if res.reply == nil {
		o.drop = res.ignore
		if o.drop == "" {
			o.drop = "ignored"
		}
		return o
	}
	o.reply = res.reply
	o.dst = replyDest(x, res.reply)
	return o
}

// unicastHW reports whether a 6-byte chaddr can be a network card's: not
// all zeros, not broadcast or multicast (the low bit of the first byte).
// config.CheckUnicastMAC says the same for nodes.toml, with reasons.
func unicastHW(hw net.HardwareAddr) bool {
	if hw[0]&1 == 1 {
		return false
	}
	for _, b := range hw {
		if b != 0 {
			return true
		}
	}
	return false
}

func typeLabel(t dhcpv4.MessageType) string {
	if t >= dhcpv4.MessageTypeDiscover && t <= dhcpv4.MessageTypeInform {
		return t.String()
	}
	return "OTHER"
}

func nodeName(x *exchange) string {
	if x == nil || x.node == nil {
		return ""
	}
	return x.node.Name
}

// listenUDP opens an IPv4 UDP socket on addr, bound to iface with
// SO_BINDTODEVICE when iface is set, with SO_BROADCAST so replies can go to
// 255.255.255.255. No SO_REUSEADDR/SO_REUSEPORT: a second DHCP server on
// the same port must fail loudly, not share packets.
func listenUDP(iface, addr string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: socketControl(iface)}
	pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		if iface != "" {
			return nil, fmt.Errorf("listen %s on interface %s: %w", addr, iface, err)
		}
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return pc.(*net.UDPConn), nil
}

// Health is false, with the reason, while the server's leases cannot be
// trusted or stored (a corrupt lease file was moved aside, a write failed).
// /healthz includes it.
func (s *Server) Health() (ok bool, reason string) {
	var reasons []string
	if g := s.guard; g.active(time.Now()) {
		reasons = append(reasons, fmt.Sprintf("leases lost (%s); pool addresses are probed before being offered until %s",
			g.reason, g.until.Format(time.RFC3339)))
	}
	if ok, reason := s.leases.health(); !ok {
		reasons = append(reasons, reason)
	}
	if len(reasons) == 0 {
		return true, ""
	}
	return false, "dhcp: " + strings.Join(reasons, "; ")
}
