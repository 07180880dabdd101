package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/sys/unix"
)

// errNoAnswer is a DHCP exchange that got no (matching) reply in time.
var errNoAnswer = errors.New("no DHCP answer")

// dhcpPort is a shared DHCP client socket for many simulated NICs: one UDP
// socket on port 68 of one interface, sending broadcasts and handing each
// reply to the exchange waiting for its transaction ID and client MAC.
// Servers broadcast replies to clients without an address (and to clients
// that set the broadcast flag), so every simulated MAC's reply arrives
// here; replies nobody waits for are dropped and counted.
type dhcpPort struct {
	conn      net.PacketConn
	server    *net.UDPAddr
	mu        sync.Mutex
	waiters   map[dhcpv4.TransactionID]*dhcpWaiter
	unmatched atomic.Int64 // replies for no waiting exchange
	malformed atomic.Int64 // packets that did not parse
}

type dhcpWaiter struct {
	mac net.HardwareAddr
	ch  chan *dhcpv4.DHCPv4 // buffered; a full channel drops the reply
}

// listenDHCP opens the shared client socket on iface (port 68).
func listenDHCP(iface string) (*dhcpPort, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			// The server answers many nodes at once: make room for the
			// burst (FORCE: past rmem_max, as root), so drops are the
			// server's, not ours (see udpDrops).
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 32<<20)
			}
			serr = unix.BindToDevice(int(fd), iface)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := lc.ListenPacket(context.Background(), "udp4", ":68")
	if err != nil {
		return nil, fmt.Errorf("dhcp client socket on %s: %w", iface, err)
	}
	return newDHCPPort(conn, &net.UDPAddr{IP: net.IPv4bcast, Port: 67}), nil
}

// newDHCPPort starts the reader on conn; requests go to server.
func newDHCPPort(conn net.PacketConn, server *net.UDPAddr) *dhcpPort {
	p := &dhcpPort{conn: conn, server: server, waiters: map[dhcpv4.TransactionID]*dhcpWaiter{}}
	go p.readLoop()
	return p
}

// Close stops the reader.
func (p *dhcpPort) Close() error { return p.conn.Close() }

func (p *dhcpPort) readLoop() {
	buf := make([]byte, 1500)
	for {
		n, _, err := p.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			p.malformed.Add(1)
			continue
		}
		if m.OpCode != dhcpv4.OpcodeBootReply {
			continue // our own broadcasts, other clients' requests
		}
		p.mu.Lock()
		w := p.waiters[m.TransactionID]
		p.mu.Unlock()
		if w == nil || m.ClientHWAddr.String() != w.mac.String() {
			p.unmatched.Add(1)
			continue
		}
		select {
		case w.ch <- m:
		default:
			p.unmatched.Add(1)
		}
	}
}

// exchange sends req and waits up to timeout for a reply of type want with
// the same transaction ID and client MAC.
func (p *dhcpPort) exchange(ctx context.Context, req *dhcpv4.DHCPv4, want dhcpv4.MessageType, timeout time.Duration) (*dhcpv4.DHCPv4, error) {
	w := &dhcpWaiter{mac: req.ClientHWAddr, ch: make(chan *dhcpv4.DHCPv4, 4)}
	p.mu.Lock()
	if _, busy := p.waiters[req.TransactionID]; busy {
		p.mu.Unlock()
		return nil, fmt.Errorf("dhcp: transaction ID %s in use", req.TransactionID)
	}
	p.waiters[req.TransactionID] = w
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiters, req.TransactionID)
		p.mu.Unlock()
	}()
	if _, err := p.conn.WriteTo(req.ToBytes(), p.server); err != nil {
		return nil, fmt.Errorf("dhcp send %s: %w", req.MessageType(), err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case m := <-w.ch:
			if m.MessageType() == want {
				return m, nil
			}
			if m.MessageType() == dhcpv4.MessageTypeNak {
				return nil, fmt.Errorf("dhcp: NAK: %s", m.Message())
			}
		case <-t.C:
			return nil, fmt.Errorf("%w to %s in %s", errNoAnswer, req.MessageType(), timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// dhcpClient describes a booting client's DHCP identity.
type dhcpClient struct {
	MAC  net.HardwareAddr
	IPXE bool // iPXE (user class "iPXE", option 175) rather than PXE firmware
	// Timeout of the first try; later tries double it (PXE: 4, 8, 16, 32 s).
	Timeout time.Duration
	Tries   int
}

// lease is what a DORA gave: the address, the server and the boot file.
type lease struct {
	IP         net.IP
	Server     net.IP // option 54
	NextServer net.IP // siaddr: the TFTP server
	BootFile   string
}

// dora runs DISCOVER/OFFER/REQUEST/ACK as PXE firmware or iPXE does:
// option 93 (x86 BIOS), 94, 97, vendor class PXEClient, the broadcast flag,
// and for iPXE user class "iPXE". Each step is retried with a doubled timeout.
func (p *dhcpPort) dora(ctx context.Context, c dhcpClient) (*lease, error) {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithHwAddr(c.MAC),
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 2, 1})),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, uuidFor(c.MAC)...))),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1472)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
			dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName, dhcpv4.OptionVendorSpecificInformation),
	}
	if c.IPXE {
		mods = append(mods,
			dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
			dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), []byte{0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e})))
	}
	tries := max(c.Tries, 1)
	var offer *dhcpv4.DHCPv4
	var err error
	for i, to := 0, c.Timeout; i < tries; i, to = i+1, to*2 {
		var disc *dhcpv4.DHCPv4
		disc, err = dhcpv4.NewDiscovery(c.MAC, mods...)
		if err != nil {
			return nil, err
		}
		if offer, err = p.exchange(ctx, disc, dhcpv4.MessageTypeOffer, to); err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, fmt.Errorf("discover: %w", err)
	}
	for i, to := 0, c.Timeout; i < tries; i, to = i+1, to*2 {
		var req *dhcpv4.DHCPv4
		req, err = dhcpv4.NewRequestFromOffer(offer, mods...)
		if err != nil {
			return nil, err
		}
		var ack *dhcpv4.DHCPv4
		if ack, err = p.exchange(ctx, req, dhcpv4.MessageTypeAck, to); err == nil {
			return &lease{IP: ack.YourIPAddr, Server: ack.ServerIdentifier(), NextServer: ack.ServerIPAddr,
				BootFile: bootFile(ack)}, nil
		}
		if ctx.Err() != nil || !errors.Is(err, errNoAnswer) {
			break
		}
	}
	return nil, fmt.Errorf("request: %w", err)
}

// bootFile is option 67, else the BOOTP file field.
func bootFile(m *dhcpv4.DHCPv4) string {
	if f := m.BootFileNameOption(); f != "" {
		return f
	}
	return m.BootFileName
}

// uuidFor is a stable per-MAC SMBIOS UUID (option 97).
func uuidFor(mac net.HardwareAddr) []byte {
	u := make([]byte, 16)
	copy(u[10:], mac)
	u[6] = 0x40
	return u
}

// udpDrops is the kernel's drop count of the IPv4 UDP sockets bound to
// port in this network namespace (/proc/net/udp), -1 when unknown.
func udpDrops(port int) int64 {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return -1
	}
	return parseUDPDrops(string(b), port)
}

func parseUDPDrops(table string, port int) int64 {
	want := fmt.Sprintf(":%04X", port)
	var drops int64
	for _, line := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 13 || !strings.HasSuffix(f[1], want) {
			continue
		}
		n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
		if err != nil {
			return -1
		}
		drops += n
	}
	return drops
}
