package dhcp

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/wwcluster/ww/server/config"
)

// The namespace tests re-execute this test binary inside the client
// namespace as a DHCP client (insomniacslk's nclient4, or a plain UDP
// socket for relay and PXE-port requests). helperEnv carries the
// JSON-encoded helperArgs; the result is printed as JSON on stdout.
const helperEnv = "WWT_DHCP_CLIENT"

func TestMain(m *testing.M) {
	if args := os.Getenv(helperEnv); args != "" {
		os.Exit(runClientHelper(args))
	}
	if root := os.Getenv(serverHelperEnv); root != "" {
		os.Exit(runServerHelper(root))
	}
	os.Exit(m.Run())
}

type helperArgs struct {
	Mode    string // "dora", "discover", "relay", "pxeport"
	Iface   string
	MAC     string // chaddr
	Arch    int    // option 93; -1: none
	Vendor  string // option 60
	IPXE    bool   // user class "iPXE"
	Server  string // relay/pxeport: server address
	Local   string // relay: giaddr and source address; pxeport: ciaddr and source
	Port    int    // relay/pxeport: server port
	Timeout time.Duration
	// perf: transactions and how many may be in flight.
	Count, Window int
}

type helperResult struct {
	Offer *pktSummary `json:",omitempty"`
	Ack   *pktSummary `json:",omitempty"`
	Perf  *perfResult `json:",omitempty"`
	Err   string      `json:",omitempty"`
}

type perfResult struct {
	Done, Lost int
	Seconds    float64
}

type pktSummary struct {
	Type       string
	YourIP     string
	ServerIP   string // siaddr
	GatewayIP  string
	File       string // header file field
	BootOpt    string // option 67
	TFTPServer string // option 66
	Vendor     string // option 60
	VendorOpts string // option 43, hex
	ServerID   string
	Hostname   string
	Netmask    string
	Router     []string
	DNS        []string
	Domain     string
	LeaseSec   int
	From       string
}

func summarize(p *dhcpv4.DHCPv4) *pktSummary {
	if p == nil {
		return nil
	}
	s := &pktSummary{
		Type: p.MessageType().String(), YourIP: p.YourIPAddr.String(), ServerIP: p.ServerIPAddr.String(),
		GatewayIP: p.GatewayIPAddr.String(), File: p.BootFileName, BootOpt: p.BootFileNameOption(),
		TFTPServer: p.TFTPServerName(), Vendor: p.ClassIdentifier(),
		VendorOpts: hex.EncodeToString(p.Options.Get(dhcpv4.OptionVendorSpecificInformation)),
		Hostname:   p.HostName(), Domain: p.DomainName(),
		LeaseSec: int(p.IPAddressLeaseTime(0).Seconds()),
	}
	if id := p.ServerIdentifier(); id != nil {
		s.ServerID = id.String()
	}
	if m := p.SubnetMask(); m != nil {
		s.Netmask = net.IP(m).String()
	}
	for _, r := range p.Router() {
		s.Router = append(s.Router, r.String())
	}
	for _, d := range p.DNS() {
		s.DNS = append(s.DNS, d.String())
	}
	return s
}

func (a helperArgs) modifiers(hw net.HardwareAddr) []dhcpv4.Modifier {
	mods := []dhcpv4.Modifier{dhcpv4.WithHwAddr(hw)}
	if a.Arch >= 0 {
		mods = append(mods, withArch(uint16(a.Arch)))
	}
	if a.Vendor != "" {
		mods = append(mods, withVendor(a.Vendor))
	}
	if a.IPXE {
		mods = append(mods, withIPXE())
	}
	return mods
}

func runClientHelper(raw string) int {
	var a helperArgs
	res := helperResult{}
	defer func() { _ = json.NewEncoder(os.Stdout).Encode(res) }()
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		res.Err = err.Error()
		return 0
	}
	if err := clientHelper(a, &res); err != nil {
		res.Err = err.Error()
	}
	return 0
}

func clientHelper(a helperArgs, res *helperResult) error {
	hw, err := net.ParseMAC(a.MAC)
	if err != nil {
		return err
	}
	if a.Timeout == 0 {
		a.Timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.Timeout)
	defer cancel()
	switch a.Mode {
	case "dora", "discover":
		c, err := nclient4.New(a.Iface, nclient4.WithHWAddr(hw), nclient4.WithTimeout(a.Timeout/3), nclient4.WithRetry(2))
		if err != nil {
			return fmt.Errorf("nclient4: %w", err)
		}
		defer c.Close()
		if a.Mode == "discover" {
			offer, err := c.DiscoverOffer(ctx, a.modifiers(hw)...)
			res.Offer = summarize(offer)
			return err
		}
		lease, err := c.Request(ctx, a.modifiers(hw)...)
		if lease != nil {
			res.Offer, res.Ack = summarize(lease.Offer), summarize(lease.ACK)
		}
		var nak *nclient4.ErrNak
		if errors.As(err, &nak) {
			res.Offer, res.Ack = summarize(nak.Offer), summarize(nak.Nak)
		}
		return err
	case "relay", "pxeport":
		// A plain UDP exchange: as a relay agent (giaddr = Local, from
		// Local:67) or as a PXE client asking the boot server port (ciaddr = Local).
		local := net.ParseIP(a.Local)
		lport := 67
		mods := a.modifiers(hw)
		typ := dhcpv4.MessageTypeDiscover
		if a.Mode == "relay" {
			mods = append(mods, dhcpv4.WithGatewayIP(local), withHops(1))
		} else {
			lport = 68
			typ = dhcpv4.MessageTypeRequest
			mods = append(mods, dhcpv4.WithClientIP(local))
		}
		mods = append(mods, dhcpv4.WithMessageType(typ))
		req, err := dhcpv4.New(mods...)
		if err != nil {
			return err
		}
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: local, Port: lport})
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.ParseIP(a.Server), Port: a.Port}); err != nil {
			return err
		}
		if err := conn.SetReadDeadline(time.Now().Add(a.Timeout)); err != nil {
			return err
		}
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return err
			}
			r, err := dhcpv4.FromBytes(buf[:n])
			if err != nil || r.TransactionID != req.TransactionID {
				continue
			}
			s := summarize(r)
			s.From = from.String()
			if r.MessageType() == dhcpv4.MessageTypeOffer {
				res.Offer = s
			} else {
				res.Ack = s
			}
			return nil
		}
	case "perf":
		r, err := perfClient(a)
		res.Perf = r
		return err
	default:
		return fmt.Errorf("unknown helper mode %q", a.Mode)
	}
}

// perfClient is a load generator acting as a relay agent (like Kea's
// perfdhcp -A): Count DISCOVER→OFFER→REQUEST→ACK exchanges for distinct
// MACs, at most Window in flight, replies unicast back to Local:67. An
// exchange without an answer for a second counts as lost.
func perfClient(a helperArgs) (*perfResult, error) {
	local := net.ParseIP(a.Local)
	server := &net.UDPAddr{IP: net.ParseIP(a.Server), Port: a.Port}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: local, Port: 67})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetReadBuffer(4 << 20)
	pending := map[dhcpv4.TransactionID]time.Time{}
	next, done, lost := 0, 0, 0
	send := func(p *dhcpv4.DHCPv4) error {
		_, err := conn.WriteTo(p.ToBytes(), server)
		return err
	}
	start := time.Now()
	refill := func() error {
		for len(pending) < a.Window && next < a.Count {
			hw := net.HardwareAddr{0x02, 0x01, byte(next >> 24), byte(next >> 16), byte(next >> 8), byte(next)}
			d, err := dhcpv4.NewDiscovery(hw, dhcpv4.WithGatewayIP(local), withHops(1))
			if err != nil {
				return err
			}
			next++
			pending[d.TransactionID] = time.Now()
			if err := send(d); err != nil {
				return err
			}
		}
		return nil
	}
	if err := refill(); err != nil {
		return nil, err
	}
	buf := make([]byte, 1500)
	for done+lost < a.Count {
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return nil, err
			}
		} else if r, err := dhcpv4.FromBytes(buf[:n]); err == nil {
			if _, ok := pending[r.TransactionID]; ok {
				switch r.MessageType() {
				case dhcpv4.MessageTypeOffer:
					req, err := dhcpv4.NewRequestFromOffer(r, dhcpv4.WithGatewayIP(local), withHops(1))
					if err != nil {
						return nil, err
					}
					if err := send(req); err != nil {
						return nil, err
					}
				case dhcpv4.MessageTypeAck:
					delete(pending, r.TransactionID)
					done++
				default:
					delete(pending, r.TransactionID)
					lost++
				}
			}
		}
		for xid, t := range pending {
			if time.Since(t) > time.Second {
				delete(pending, xid)
				lost++
			}
		}
		if err := refill(); err != nil {
			return nil, err
		}
	}
	return &perfResult{Done: done, Lost: lost, Seconds: time.Since(start).Seconds()}, nil
}

func withHops(n uint8) dhcpv4.Modifier { return func(d *dhcpv4.DHCPv4) { d.HopCount = n } }

// serverHelperEnv makes this test binary a DHCP server process: the served
// tree is the variable's value, leases go to its state/ directory. It
// prints "ready" once serving and runs until killed or SIGTERM.
const serverHelperEnv = "WWT_DHCP_SERVER"

func runServerHelper(root string) int {
	log := quietLog()
	store, err := config.NewStore(root, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv, err := New(Options{Store: store, StateDir: filepath.Join(root, "state"), Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
		fmt.Println("ready")
	case err := <-errc:
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := <-errc; err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
