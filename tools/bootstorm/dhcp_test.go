package main

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// A fake server on loopback answers each request first with a reply for
// another MAC and a malformed packet, then with the real reply: the shared
// client socket must hand each exchange only its own reply.
func TestDHCPPortDemux(t *testing.T) {
	srv, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := newDHCPPort(cli, srv.LocalAddr().(*net.UDPAddr))
	defer p.Close()

	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			req, err := dhcpv4.FromBytes(buf[:n])
			if err != nil {
				continue
			}
			typ := dhcpv4.MessageTypeOffer
			if req.MessageType() == dhcpv4.MessageTypeRequest {
				typ = dhcpv4.MessageTypeAck
			}
			other, _ := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(typ))
			other.ClientHWAddr = net.HardwareAddr{2, 0, 0, 0, 0, 9}
			_, _ = srv.WriteTo(other.ToBytes(), from)
			_, _ = srv.WriteTo([]byte{1, 2, 3}, from)
			reply, _ := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(typ),
				dhcpv4.WithYourIP(net.IPv4(10, 100, 0, 11)), dhcpv4.WithServerIP(net.IPv4(10, 100, 0, 1)),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 100, 0, 1))),
				dhcpv4.WithOption(dhcpv4.OptBootFileName("undionly.kpxe")))
			_, _ = srv.WriteTo(reply.ToBytes(), from)
		}
	}()

	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	l, err := p.dora(context.Background(), dhcpClient{MAC: mac, Timeout: 2 * time.Second, Tries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !l.IP.Equal(net.IPv4(10, 100, 0, 11)) || !l.NextServer.Equal(net.IPv4(10, 100, 0, 1)) || l.BootFile != "undionly.kpxe" {
		t.Errorf("lease %+v", l)
	}
	if got := p.unmatched.Load(); got != 2 {
		t.Errorf("unmatched = %d, want 2 (the other MAC's OFFER and ACK)", got)
	}
	if got := p.malformed.Load(); got != 2 {
		t.Errorf("malformed = %d, want 2", got)
	}
}

func TestDHCPPortTimeout(t *testing.T) {
	srv, err := net.ListenPacket("udp4", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := newDHCPPort(cli, srv.LocalAddr().(*net.UDPAddr))
	defer p.Close()
	t0 := time.Now()
	_, err = p.dora(context.Background(), dhcpClient{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Timeout: 20 * time.Millisecond, Tries: 3})
	if !errors.Is(err, errNoAnswer) {
		t.Fatalf("err = %v, want errNoAnswer", err)
	}
	// 20 + 40 + 80 ms: each try doubles the timeout.
	if d := time.Since(t0); d < 140*time.Millisecond {
		t.Errorf("gave up after %s, want >= 140ms (doubling timeouts)", d)
	}
	p.mu.Lock()
	left := len(p.waiters)
	p.mu.Unlock()
	if left != 0 {
		t.Errorf("%d waiters left registered", left)
	}
}

func TestParseUDPDrops(t *testing.T) {
	table := `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  110: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12345 2 0000000000000000 17
  111: 0100007F:0045 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12346 2 0000000000000000 5
`
	if got := parseUDPDrops(table, 68); got != 17 {
		t.Errorf("drops on port 68 = %d, want 17", got)
	}
	if got := parseUDPDrops(table, 67); got != 0 {
		t.Errorf("drops on port 67 = %d, want 0", got)
	}
}
