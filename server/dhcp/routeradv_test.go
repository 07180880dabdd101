package dhcp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
)

// advInterval is an Advertisement Interval option (RFC 6275 7.3).
func advInterval(d time.Duration) ndp.Option {
	v := make([]byte, 6)
	binary.BigEndian.PutUint32(v[2:], uint32(d/time.Millisecond))
	return &ndp.RawOption{Type: optAdvInterval, Length: 1, Value: v}
}

func TestRouterHold(t *testing.T) {
	for _, c := range []struct {
		name string
		ra   ndp.RouterAdvertisement
		want time.Duration
	}{
		{"RFC 4861 defaults: 3 x 600 s", ndp.RouterAdvertisement{RouterLifetime: 1800 * time.Second}, 30 * time.Minute},
		{"not a default router", ndp.RouterAdvertisement{}, 30 * time.Minute},
		{"lifetime longer than 3 intervals", ndp.RouterAdvertisement{RouterLifetime: 9000 * time.Second}, 9000 * time.Second},
		{"advertised interval", ndp.RouterAdvertisement{Options: []ndp.Option{advInterval(4 * time.Second)}}, 12 * time.Second},
		{"advertised interval, longer lifetime", ndp.RouterAdvertisement{RouterLifetime: time.Second,
			Options: []ndp.Option{advInterval(100 * time.Millisecond)}}, time.Second},
	} {
		// Through the wire format, as the responder sees it.
		b, err := ndp.MarshalMessage(&c.ra)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ndp.ParseMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		if got := routerHold(m.(*ndp.RouterAdvertisement)); got != c.want {
			t.Errorf("%s: hold %v, want %v", c.name, got, c.want)
		}
	}
}

func TestAnnouncesNothing(t *testing.T) {
	lla := &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
	prefix := &ndp.PrefixInformation{PrefixLength: 64, AutonomousAddressConfiguration: true,
		ValidLifetime: time.Hour, PreferredLifetime: time.Hour, Prefix: netip.MustParseAddr("2001:db8::")}
	for _, c := range []struct {
		name string
		ra   ndp.RouterAdvertisement
		want bool
	}{
		{"ours", ndp.RouterAdvertisement{Options: []ndp.Option{lla}}, true},
		{"bare", ndp.RouterAdvertisement{}, true},
		{"default router", ndp.RouterAdvertisement{RouterLifetime: time.Second, Options: []ndp.Option{lla}}, false},
		{"prefix only (lifetime 0)", ndp.RouterAdvertisement{Options: []ndp.Option{lla, prefix}}, false},
		{"DHCPv6", ndp.RouterAdvertisement{ManagedConfiguration: true}, false},
		{"other config", ndp.RouterAdvertisement{OtherConfiguration: true}, false},
		{"hop limit", ndp.RouterAdvertisement{CurrentHopLimit: 64}, false},
		{"reachable time", ndp.RouterAdvertisement{ReachableTime: time.Second}, false},
		{"MTU", ndp.RouterAdvertisement{Options: []ndp.Option{ndp.NewMTU(1400)}}, false},
		{"DNS", ndp.RouterAdvertisement{Options: []ndp.Option{&ndp.RecursiveDNSServer{Lifetime: time.Hour,
			Servers: []netip.Addr{netip.MustParseAddr("2001:db8::53")}}}}, false},
		{"unknown option", ndp.RouterAdvertisement{Options: []ndp.Option{advInterval(time.Second)}}, false},
	} {
		if got := announcesNothing(&c.ra); got != c.want {
			t.Errorf("%s: announcesNothing = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRAGate(t *testing.T) {
	var g raGate
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if g.present(t0) {
		t.Fatal("a router present before any advertised")
	}
	if !g.router(t0, 10*time.Second) {
		t.Error("first router: want first = true")
	}
	if g.router(t0.Add(5*time.Second), 10*time.Second) {
		t.Error("router while present: want first = false")
	}
	// A later RA with a shorter hold does not shorten the quiet time.
	g.router(t0.Add(6*time.Second), time.Second)
	if !g.present(t0.Add(15*time.Second - time.Nanosecond)) {
		t.Error("hold ended before 15 s (5 s + 10 s)")
	}
	if g.present(t0.Add(15 * time.Second)) {
		t.Error("still present after its hold time")
	}
	if !g.router(t0.Add(20*time.Second), time.Second) {
		t.Error("router after the hold time: want first = true")
	}
}
