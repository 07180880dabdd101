package dhcp

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/status/statustest"
)

const testServerTOML = `
address = "10.201.0.1"
listen = ":9873"

[dhcp]
enabled = true
mode = "%MODE%"
interface = "%IFACE%"
listen = "%LISTEN%"
range_start = "%RANGE_START%"
range_end = "%RANGE_END%"
netmask = "%NETMASK%"
router = "10.201.0.254"
dns = ["10.201.0.53", "10.201.0.54"]
domain = "cluster.test"
lease_time = "1h"
arm64_file = "%ARM64%"
workers = 2
answer_router_solicitations = %ANSWER_RS%
`

const testNodesTOML = `
[profiles.default]
image = "debian"

[nodes.n001]
profiles = ["default"]
[nodes.n001.network.eth0]
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.201.0.11"

[nodes.n002]
profiles = ["default"]
[nodes.n002.network.eth0]
hwaddr = "52:54:00:00:00:02"
ipaddr = "10.201.0.102"
netmask = "255.255.0.0"
gateway = "10.201.0.1"

[nodes.n003]
profiles = ["default"]
[nodes.n003.network.eth0]
hwaddr = "52:54:00:00:00:03"
`

// testConfig describes a served tree for tests.
type testConfig struct {
	mode, iface, listen  string
	rangeStart, rangeEnd string
	arm64                string
	netmask              string // default 255.255.255.0
	nodes                string // nodes.toml; testNodesTOML when empty
	// answerRS is dhcp.answer_router_solicitations as TOML (`"auto"`,
	// `true`, ...; "omit": no such line), false when empty: a server run in-process on a netns
	// thread would start its responder on a goroutine outside the namespace.
	answerRS string
}

func (c testConfig) serverTOML() string {
	r := map[string]string{
		"%MODE%": "reservation", "%IFACE%": "lo", "%LISTEN%": ":67",
		"%RANGE_START%": "", "%RANGE_END%": "", "%ARM64%": "",
	}
	if c.mode != "" {
		r["%MODE%"] = c.mode
	}
	if c.iface != "" {
		r["%IFACE%"] = c.iface
	}
	if c.listen != "" {
		r["%LISTEN%"] = c.listen
	}
	r["%RANGE_START%"], r["%RANGE_END%"], r["%ARM64%"] = c.rangeStart, c.rangeEnd, c.arm64
	r["%ANSWER_RS%"] = "false"
	if c.answerRS != "" {
		r["%ANSWER_RS%"] = c.answerRS
	}
	r["%NETMASK%"] = "255.255.255.0"
	if c.netmask != "" {
		r["%NETMASK%"] = c.netmask
	}
	s := testServerTOML
	if c.answerRS == "omit" {
		s = strings.Replace(s, "answer_router_solicitations = %ANSWER_RS%\n", "", 1)
	}
	for k, v := range r {
		s = strings.ReplaceAll(s, k, v)
	}
	return s
}

// writeTree writes wwserver.toml and nodes.toml into dir.
func writeTree(t testing.TB, dir string, c testConfig) {
	t.Helper()
	nodes := c.nodes
	if nodes == "" {
		nodes = testNodesTOML
	}
	if err := os.WriteFile(filepath.Join(dir, config.ServerFile), []byte(c.serverTOML()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, config.NodesFile), []byte(nodes), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newStore(t testing.TB, c testConfig) *config.Store {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, c)
	st, err := config.NewStore(dir, quietLog())
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return st
}

func quietLog() *slog.Logger {
	if os.Getenv("WWT_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testEnv struct {
	srv   *Server
	store *config.Store
	rec   *statustest.Recorder
	reg   *prometheus.Registry
	now   time.Time
}

func newEnv(t testing.TB, c testConfig) *testEnv {
	t.Helper()
	e := &testEnv{store: newStore(t, c), rec: &statustest.Recorder{}, reg: prometheus.NewRegistry(),
		now: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)}
	srv, err := New(Options{Store: e.store, Status: e.rec, Log: quietLog(), Registerer: e.reg})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	return e
}

// do runs one request through decide.
func (e *testEnv) do(t testing.TB, req *dhcpv4.DHCPv4) outcome {
	t.Helper()
	return e.doFrom(t, req, &net.UDPAddr{IP: net.IPv4zero, Port: clientPort}, false)
}

func (e *testEnv) doFrom(t testing.TB, req *dhcpv4.DHCPv4, src *net.UDPAddr, pxePort bool) outcome {
	t.Helper()
	o := e.srv.decide(req.ToBytes(), src, pxePort, e.store.Current(), e.now)
	if o.reply != nil {
		// The reply must survive the wire.
		if _, err := dhcpv4.FromBytes(o.reply.ToBytes()); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
	}
	return o
}

func mustMAC(t testing.TB, s string) net.HardwareAddr {
	t.Helper()
	hw, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return hw
}

// Request modifiers.
func withArch(a uint16) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{byte(a >> 8), byte(a)}))
}

func withVendor(v string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(v))
}

func withIPXE() dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE")))
}

func discover(t testing.TB, mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.NewDiscovery(mustMAC(t, mac), mods...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func request(t testing.TB, mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithHwAddr(mustMAC(t, mac)),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
	}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func msg(t testing.TB, typ dhcpv4.MessageType, mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.New(append([]dhcpv4.Modifier{
		dhcpv4.WithHwAddr(mustMAC(t, mac)),
		dhcpv4.WithMessageType(typ),
	}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func serverID(ip string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(ip)))
}

func requestedIP(ip string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip)))
}
