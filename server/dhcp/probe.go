package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/arp"
)

// After lease records were lost (a corrupt lease file moved aside), the
// table no longer knows every address in use: until a whole lease time has
// passed (every client that held a lease has renewed or let it expire),
// pool addresses are probed with ARP before they are offered, as RFC 2131
// 2.2 suggests, and an address that answers is quarantined.

// Probe bounds.
const (
	// probeTimeout bounds one ARP probe (one worker waits that long).
	probeTimeout = 200 * time.Millisecond
	// probeFreeFor is how long a "free" probe result is trusted.
	probeFreeFor = 5 * time.Minute
	// probeAttempts bounds the addresses tried for one DISCOVER.
	probeAttempts = 4
)

// addressProber tells whether an address is answered on the local network.
type addressProber interface {
	// inUse probes ip on iface ("" : the interface whose subnet holds ip),
	// waiting at most probeTimeout.
	inUse(iface string, ip netip.Addr) (bool, error)
}

// arpProber probes with an ARP request (mdlayher/arp, AF_PACKET).
type arpProber struct{}

func (arpProber) inUse(iface string, ip netip.Addr) (bool, error) {
	ifi, err := probeInterface(iface, ip)
	if err != nil {
		return false, err
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return false, fmt.Errorf("arp probe on %s: %w", ifi.Name, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(probeTimeout)); err != nil {
		return false, fmt.Errorf("arp probe on %s: %w", ifi.Name, err)
	}
	if _, err := c.Resolve(ip); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false, nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, nil
		}
		return false, fmt.Errorf("arp probe of %s on %s: %w", ip, ifi.Name, err)
	}
	return true, nil
}

// probeInterface is iface, or the interface with an address in ip's /24..
// subnet when iface is "".
func probeInterface(iface string, ip netip.Addr) (*net.Interface, error) {
	if iface != "" {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return nil, fmt.Errorf("arp probe: %w", err)
		}
		return ifi, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("arp probe: %w", err)
	}
	for i := range ifs {
		addrs, _ := ifs[i].Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.Contains(ip.AsSlice()) {
				return &ifs[i], nil
			}
		}
	}
	return nil, fmt.Errorf("arp probe: no interface on the subnet of %s", ip)
}

// probeGuard decides which pool addresses need a probe and remembers the
// results.
type probeGuard struct {
	prober addressProber
	until  time.Time // probing stops here; zero: never probe
	reason string    // why the table is not trusted

	mu   sync.Mutex
	free map[netip.Addr]time.Time // probed free, trusted until
}

// active reports whether addresses must be probed at now.
func (g *probeGuard) active(now time.Time) bool {
	return g != nil && now.Before(g.until)
}

// inUse reports whether ip answered a probe (cached while free); a probe
// that fails counts as in use: the address is not known to be free.
func (g *probeGuard) inUse(iface string, ip netip.Addr, now time.Time, m *metrics) bool {
	g.mu.Lock()
	if t, ok := g.free[ip]; ok && now.Before(t) {
		g.mu.Unlock()
		return false
	}
	g.mu.Unlock()
	used, err := g.prober.inUse(iface, ip)
	switch {
	case err != nil:
		m.probes.WithLabelValues("error").Inc()
		return true
	case used:
		m.probes.WithLabelValues("in_use").Inc()
		return true
	}
	m.probes.WithLabelValues("free").Inc()
	g.mu.Lock()
	if g.free == nil {
		g.free = map[netip.Addr]time.Time{}
	}
	if len(g.free) >= 4096 { // bounded: drop what expired
		for a, t := range g.free {
			if !now.Before(t) {
				delete(g.free, a)
			}
		}
	}
	g.free[ip] = now.Add(probeFreeFor)
	g.mu.Unlock()
	return false
}
