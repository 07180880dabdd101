package dhcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/dhcp/netnstest"
	"github.com/wwcluster/ww/server/status/statustest"
)

// Namespace tests: wwserver's DHCP server runs in one network namespace,
// real clients (busybox udhcpc, insomniacslk's nclient4) in the other.
// Needs root, iproute2 and busybox (Debian: busybox-static).

const (
	knownMAC = "52:54:00:00:00:01" // n001 → 10.201.0.11
)

// nsServer is a DHCP server running in the pair's server namespace.
type nsServer struct {
	srv   *Server
	store *config.Store
	rec   *statustest.Recorder
	stop  func()
}

func startNSServer(t *testing.T, p *netnstest.Pair, c testConfig, stateDir string) *nsServer {
	t.Helper()
	c.iface = p.ServerIf
	c.listen = ":67"
	store := newStore(t, c)
	rec := &statustest.Recorder{}
	srv, err := New(Options{Store: store, StateDir: stateDir, Status: rec, Log: quietLog(),
		Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	stop := p.StartServer(t, srv.Run, srv.Ready())
	return &nsServer{srv: srv, store: store, rec: rec, stop: stop}
}

// nclient runs the nclient4 helper (this test binary) in the client namespace.
func nclient(t *testing.T, p *netnstest.Pair, a helperArgs) helperResult {
	t.Helper()
	if a.Iface == "" {
		a.Iface = p.ClientIf
	}
	if a.MAC == "" {
		a.MAC = p.ClientMAC
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(a)
	ctx, cancel := context.WithTimeout(context.Background(), a.Timeout+30*time.Second)
	defer cancel()
	cmd := p.ClientCommand(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(raw))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client helper: %v: %s", err, stderr.String())
	}
	var res helperResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("client helper output %q: %v", out, err)
	}
	return res
}

// udhcpc runs busybox udhcpc once in the client namespace and returns the
// environment its script saw for "bound" (nil when it got no lease).
func udhcpc(t *testing.T, p *netnstest.Pair, args ...string) map[string]string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] || exit 0\nenv | sed 's/^/WWT /'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{"udhcpc", "-i", p.ClientIf, "-f", "-q", "-n", "-t", "3", "-T", "1", "-s", script}, args...)
	out, err := p.ClientCommand(ctx, "busybox", full...).CombinedOutput()
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if kv, ok := strings.CutPrefix(sc.Text(), "WWT "); ok {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
	}
	if len(env) == 0 {
		t.Logf("udhcpc %v: no lease (%v): %s", args, err, out)
		return nil
	}
	return env
}

func expect(t *testing.T, what string, got, want any) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestNetnsReservation(t *testing.T) {
	netnstest.Require(t, "busybox")
	p := netnstest.New(t, knownMAC)
	s := startNSServer(t, p, testConfig{arm64: "ipxe-arm64.efi", rangeStart: "10.201.0.100", rangeEnd: "10.201.0.110"}, "")
	ipxeURL := "http://10.201.0.1:9873/ipxe/" + knownMAC

	t.Run("udhcpc", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			file string
		}{
			{"bios", []string{"-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"}, "undionly.kpxe"},
			{"efi", []string{"-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"}, "snponly.efi"},
			{"arm64", []string{"-x", "0x5d:000b"}, "ipxe-arm64.efi"},
			{"ipxe", []string{"-x", "0x5d:0000", "-x", "0x4d:69505845"}, ipxeURL},
		} {
			t.Run(tc.name, func(t *testing.T) {
				env := udhcpc(t, p, tc.args...)
				if env == nil {
					t.Fatal("no lease")
				}
				expect(t, "ip", env["ip"], "10.201.0.11")
				expect(t, "boot_file", env["boot_file"], tc.file)
				expect(t, "siaddr", env["siaddr"], "10.201.0.1")
				expect(t, "serverid", env["serverid"], "10.201.0.1")
				expect(t, "subnet", env["subnet"], "255.255.255.0")
				expect(t, "router", env["router"], "10.201.0.254")
				expect(t, "hostname", env["hostname"], "n001")
				expect(t, "domain", env["domain"], "cluster.test")
				expect(t, "lease", env["lease"], "3600")
			})
		}
	})

	t.Run("nclient4", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			a      helperArgs
			file   string
			vendor string
		}{
			{"bios", helperArgs{Arch: 0, Vendor: "PXEClient:Arch:00000:UNDI:002001"}, "undionly.kpxe", "PXEClient"},
			{"efi", helperArgs{Arch: 7, Vendor: "PXEClient:Arch:00007:UNDI:003016"}, "snponly.efi", "PXEClient"},
			{"arm64", helperArgs{Arch: 11}, "ipxe-arm64.efi", ""},
			{"ipxe", helperArgs{Arch: 7, IPXE: true}, ipxeURL, ""},
			{"httpclient", helperArgs{Arch: 16, Vendor: "HTTPClient:Arch:00016:UNDI:003001"}, "http://10.201.0.1:9873/ipxe-bin/ipxe.efi", "HTTPClient"},
			{"os", helperArgs{Arch: -1}, "", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tc.a.Mode = "dora"
				res := nclient(t, p, tc.a)
				if res.Err != "" || res.Ack == nil {
					t.Fatalf("DORA failed: %+v", res)
				}
				for _, r := range []*pktSummary{res.Offer, res.Ack} {
					expect(t, r.Type+" yiaddr", r.YourIP, "10.201.0.11")
					expect(t, r.Type+" file", r.File, tc.file)
					expect(t, r.Type+" option 67", r.BootOpt, tc.file)
					expect(t, r.Type+" option 60", r.Vendor, tc.vendor)
					expect(t, r.Type+" hostname", r.Hostname, "n001")
					if tc.file != "" {
						expect(t, r.Type+" siaddr", r.ServerIP, "10.201.0.1")
						expect(t, r.Type+" option 66", r.TFTPServer, "10.201.0.1")
					}
				}
				if tc.vendor == "PXEClient" {
					expect(t, "option 43", res.Ack.VendorOpts, "060108ff")
				}
			})
		}
	})

	t.Run("unknown MAC gets a pool address", func(t *testing.T) {
		res := nclient(t, p, helperArgs{Mode: "dora", MAC: "02:00:00:00:00:aa", Arch: 0})
		if res.Err != "" || res.Ack == nil || !strings.HasPrefix(res.Ack.YourIP, "10.201.0.1") || res.Ack.YourIP == "10.201.0.11" {
			t.Fatalf("pool DORA: %+v", res)
		}
		if res.Ack.Hostname != "" {
			t.Errorf("unknown MAC got hostname %q", res.Ack.Hostname)
		}
		p.SetClientMAC(t, "02:00:00:00:00:bb")
		defer p.SetClientMAC(t, knownMAC)
		env := udhcpc(t, p, "-x", "0x5d:0000")
		if env == nil || env["ip"] == res.Ack.YourIP || !strings.HasPrefix(env["ip"], "10.201.0.1") {
			t.Fatalf("udhcpc with unknown MAC: %v (nclient4 got %s)", env, res.Ack.YourIP)
		}
		expect(t, "boot_file", env["boot_file"], "undionly.kpxe")
		// Status shows the unknown MAC, with no node.
		found := false
		for _, ev := range s.rec.All() {
			if ev.MAC == "02:00:00:00:00:bb" && ev.Node == "" && ev.IP == env["ip"] && ev.Sent == "undionly.kpxe" {
				found = true
			}
		}
		if !found {
			t.Errorf("no status event for the unknown MAC: %+v", s.rec.All())
		}
	})

	t.Run("relay", func(t *testing.T) {
		res := nclient(t, p, helperArgs{Mode: "relay", MAC: knownMAC, Arch: 0, Server: p.ServerIP, Local: p.ClientIP, Port: 67})
		if res.Err != "" || res.Offer == nil {
			t.Fatalf("relayed DISCOVER: %+v", res)
		}
		expect(t, "yiaddr", res.Offer.YourIP, "10.201.0.11")
		expect(t, "giaddr", res.Offer.GatewayIP, p.ClientIP)
		expect(t, "from", res.Offer.From, "10.201.0.1:67")
	})

	t.Run("hot reload: pool removed", func(t *testing.T) {
		writeTree(t, s.store.Root(), testConfig{iface: p.ServerIf, listen: ":67", arm64: "ipxe-arm64.efi"})
		if err := s.store.Reload(); err != nil {
			t.Fatal(err)
		}
		res := nclient(t, p, helperArgs{Mode: "discover", MAC: "02:00:00:00:00:cc", Arch: 0, Timeout: 1500 * time.Millisecond})
		if res.Offer != nil {
			t.Fatalf("unknown MAC without pool got an offer: %+v", res.Offer)
		}
		p.SetClientMAC(t, "02:00:00:00:00:dd")
		defer p.SetClientMAC(t, knownMAC)
		if env := udhcpc(t, p, "-x", "0x5d:0000"); env != nil {
			t.Fatalf("udhcpc with unknown MAC got a lease: %v", env)
		}
		// The known node still gets its address.
		p.SetClientMAC(t, knownMAC)
		if env := udhcpc(t, p, "-x", "0x5d:0000"); env == nil || env["ip"] != "10.201.0.11" {
			t.Fatalf("known node after reload: %v", env)
		}
	})

	if got := counterValue(s.srv.m.sent.WithLabelValues("ACK")); got < 10 {
		t.Errorf("ACKs sent = %v", got)
	}
}

func TestNetnsProxy(t *testing.T) {
	netnstest.Require(t, "busybox")
	p := netnstest.New(t, knownMAC)
	s := startNSServer(t, p, testConfig{mode: "proxy"}, "")
	if n := len(s.srv.Addrs()); n != 2 {
		t.Errorf("proxy mode bound %d sockets, want 67 and 4011", n)
	}
	res := nclient(t, p, helperArgs{Mode: "discover", Arch: 7, Vendor: "PXEClient:Arch:00007:UNDI:003016"})
	if res.Err != "" || res.Offer == nil {
		t.Fatalf("proxy DISCOVER: %+v", res)
	}
	o := res.Offer
	expect(t, "yiaddr", o.YourIP, "0.0.0.0")
	expect(t, "siaddr", o.ServerIP, "10.201.0.1")
	expect(t, "file", o.File, "snponly.efi")
	expect(t, "option 60", o.Vendor, "PXEClient")
	expect(t, "option 43", o.VendorOpts, "060108ff")
	expect(t, "netmask", o.Netmask, "")
	expect(t, "lease", o.LeaseSec, 0)

	// A plain DHCP client gets nothing from a proxy.
	if env := udhcpc(t, p, "-x", "0x5d:0000"); env != nil {
		t.Fatalf("proxy handed out a lease: %v", env)
	}
	// ProxyDHCP request to the PXE port.
	res = nclient(t, p, helperArgs{Mode: "pxeport", Arch: 0, IPXE: true, Vendor: "PXEClient:Arch:00000:UNDI:002001",
		Server: p.ServerIP, Local: p.ClientIP, Port: PXEPort})
	if res.Err != "" || res.Ack == nil {
		t.Fatalf("PXE port request: %+v", res)
	}
	expect(t, "4011 type", res.Ack.Type, "ACK")
	expect(t, "4011 file", res.Ack.File, "http://10.201.0.1:9873/ipxe/"+knownMAC)
	expect(t, "4011 from", res.Ack.From, "10.201.0.1:4011")
}

func TestNetnsRestartKeepsLeases(t *testing.T) {
	netnstest.Require(t)
	p := netnstest.New(t, knownMAC)
	state := t.TempDir()
	cfg := testConfig{rangeStart: "10.201.0.100", rangeEnd: "10.201.0.110"}
	s := startNSServer(t, p, cfg, state)
	first := nclient(t, p, helperArgs{Mode: "dora", MAC: "02:00:00:00:00:01", Arch: -1})
	if first.Err != "" || first.Ack == nil {
		t.Fatalf("DORA: %+v", first)
	}
	s.stop()
	data, err := os.ReadFile(filepath.Join(state, LeasesFile))
	if err != nil || !bytes.Contains(data, []byte(first.Ack.YourIP)) {
		t.Fatalf("leases.json after stop: %v %s", err, data)
	}

	startNSServer(t, p, cfg, state)
	other := nclient(t, p, helperArgs{Mode: "dora", MAC: "02:00:00:00:00:02", Arch: -1})
	if other.Err != "" || other.Ack == nil {
		t.Fatalf("DORA after restart: %+v", other)
	}
	if other.Ack.YourIP == first.Ack.YourIP {
		t.Fatalf("restarted server gave %s to a second MAC", first.Ack.YourIP)
	}
	again := nclient(t, p, helperArgs{Mode: "dora", MAC: "02:00:00:00:00:01", Arch: -1})
	if again.Err != "" || again.Ack == nil || again.Ack.YourIP != first.Ack.YourIP {
		t.Fatalf("first client after restart: %+v, had %s", again, first.Ack.YourIP)
	}
}

// startServerProcess runs this test binary as a DHCP server process (see
// runServerHelper) in the server namespace on the tree at root, and waits
// until it serves.
func startServerProcess(t *testing.T, p *netnstest.Pair, root string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// `ip netns exec` execs the command: the process is the server itself.
	cmd := p.ServerCommand(context.Background(), exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), serverHelperEnv+"="+root)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line == "ready\n"
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("server process did not start: %s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("server process not ready after 30s: %s", stderr.String())
	}
	return cmd
}

// TestNetnsKillAfterAck: a pool lease is on disk before its ACK leaves. A
// real DHCP client (nclient4) gets an ACK from a server process that is
// then killed with SIGKILL at once; the restarted server gives that address
// to no other MAC and the same one back to the client.
func TestNetnsKillAfterAck(t *testing.T) {
	netnstest.Require(t)
	p := netnstest.New(t, knownMAC)
	root := t.TempDir()
	writeTree(t, root, testConfig{iface: p.ServerIf, listen: ":67", rangeStart: "10.201.0.100", rangeEnd: "10.201.0.110"})
	srv := startServerProcess(t, p, root)
	first := nclient(t, p, helperArgs{Mode: "dora", MAC: "02:00:00:00:00:01", Arch: -1})
	if err := srv.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if first.Err != "" || first.Ack == nil {
		t.Fatalf("DORA: %+v", first)
	}
	_ = srv.Wait()

	startServerProcess(t, p, root)
	other := nclient(t, p, helperArgs{Mode: "dora", MAC: "02:00:00:00:00:02", Arch: -1})
	if other.Err != "" || other.Ack == nil {
		t.Fatalf("DORA after restart: %+v", other)
	}
	if other.Ack.YourIP == first.Ack.YourIP {
		t.Fatalf("after kill -9 the restarted server gave %s, ACKed to 02:00:00:00:00:01, to 02:00:00:00:00:02", first.Ack.YourIP)
	}
	again := nclient(t, p, helperArgs{Mode: "dora", MAC: "02:00:00:00:00:01", Arch: -1})
	if again.Err != "" || again.Ack == nil || again.Ack.YourIP != first.Ack.YourIP {
		t.Fatalf("first client after restart: %+v, had %s", again, first.Ack.YourIP)
	}
}

// TestNetnsProbeAfterLostLeases: leases.json is corrupt, so the server
// cannot know which pool addresses are in use; a host on the network
// already holds the first pool address. The server probes with ARP and
// offers another address; with a sound lease file it does not probe.
func TestNetnsProbeAfterLostLeases(t *testing.T) {
	netnstest.Require(t)
	p := netnstest.New(t, knownMAC)
	// The client namespace holds 10.201.0.100 (and answers ARP for it).
	if out, err := exec.Command("ip", "-n", p.Client, "addr", "add", "10.201.0.100/24", "dev", p.ClientIf).CombinedOutput(); err != nil {
		t.Fatalf("add address: %v: %s", err, out)
	}
	cfg := testConfig{iface: p.ServerIf, listen: ":67", rangeStart: "10.201.0.100", rangeEnd: "10.201.0.110"}
	for _, corrupt := range []bool{true, false} {
		root := t.TempDir()
		writeTree(t, root, cfg)
		if corrupt {
			if err := os.MkdirAll(filepath.Join(root, "state"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "state", LeasesFile), []byte(`{"version": 2, "leases": [{"ip": "10.2`), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		srv := startServerProcess(t, p, root)
		res := nclient(t, p, helperArgs{Mode: "dora", MAC: "02:00:00:00:00:01", Arch: -1})
		_ = srv.Process.Kill()
		_ = srv.Wait()
		if res.Err != "" || res.Ack == nil {
			t.Fatalf("corrupt=%v: DORA: %+v", corrupt, res)
		}
		if corrupt && res.Ack.YourIP == "10.201.0.100" {
			t.Errorf("after losing its leases the server offered 10.201.0.100, which another host holds")
		}
		if !corrupt && res.Ack.YourIP != "10.201.0.100" {
			t.Errorf("with a sound lease table the server probed (got %s, want 10.201.0.100)", res.Ack.YourIP)
		}
		if aside, _ := filepath.Glob(filepath.Join(root, "state", LeasesFile+".corrupt-*")); corrupt && len(aside) != 1 {
			t.Errorf("corrupt lease file not moved aside: %v", aside)
		}
	}
}

// waitLinkLocal waits until both veth ends have a usable (not tentative)
// IPv6 link-local address.
func waitLinkLocal(t *testing.T, p *netnstest.Pair) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, nsIf := range [][2]string{{p.Server, p.ServerIf}, {p.Client, p.ClientIf}} {
		for {
			out, _ := exec.Command("ip", "-n", nsIf[0], "-6", "addr", "show", "dev", nsIf[1], "scope", "link").CombinedOutput()
			if bytes.Contains(out, []byte("fe80::")) && !bytes.Contains(out, []byte("tentative")) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no link-local address on %s in %s: %s", nsIf[1], nsIf[0], out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestNetnsInterfaceBinding: a server bound to the veth does not answer a
// DHCP request arriving on another interface of its namespace.
func TestNetnsInterfaceBinding(t *testing.T) {
	netnstest.Require(t)
	p := netnstest.New(t, knownMAC)
	// A second veth pair, both ends in the server namespace: other0 <-> other1.
	for _, args := range [][]string{
		{"-n", p.Server, "link", "add", "other0", "type", "veth", "peer", "name", "other1"},
		{"-n", p.Server, "addr", "add", "10.203.0.1/24", "dev", "other0"},
		{"-n", p.Server, "link", "set", "other0", "up"},
		{"-n", p.Server, "link", "set", "other1", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	s := startNSServer(t, p, testConfig{}, "")
	// The helper runs in the server namespace, on other1.
	exe, _ := os.Executable()
	raw, _ := json.Marshal(helperArgs{Mode: "discover", Iface: "other1", MAC: knownMAC, Arch: 0, Timeout: 1500 * time.Millisecond})
	cmd := p.ServerCommand(context.Background(), exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(raw))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	var res helperResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	if res.Offer != nil {
		t.Fatalf("answered on an interface it is not bound to: %+v", res.Offer)
	}
	if got := counterValue(s.srv.m.received.WithLabelValues("DISCOVER")); got != 0 {
		t.Errorf("received %v DISCOVERs from another interface", got)
	}
	// ... while the veth it is bound to works.
	if r := nclient(t, p, helperArgs{Mode: "discover", Arch: 0}); r.Offer == nil {
		t.Fatalf("no offer on the bound interface: %+v", r)
	}
}

// TestNetnsPerf measures DORA exchanges per second over real sockets: a
// relay-style load generator in the client namespace (see perfClient),
// the server with its default pipeline and lease persistence. Opt-in:
// WWT_DHCP_PERF=1 (WWT_DHCP_PERF_COUNT, default 20000).
func TestNetnsPerf(t *testing.T) {
	if os.Getenv("WWT_DHCP_PERF") == "" {
		t.Skip("set WWT_DHCP_PERF=1 to measure DHCP exchanges per second (make test-measure runs it)")
	}
	netnstest.Require(t)
	p := netnstest.New(t, knownMAC)
	count := 20000
	if v, err := strconv.Atoi(os.Getenv("WWT_DHCP_PERF_COUNT")); err == nil && v > 0 {
		count = v
	}
	c := testConfig{rangeStart: "10.201.1.0", rangeEnd: "10.201.255.254", nodes: benchNodes, netmask: "255.255.0.0"}
	s := startNSServer(t, p, c, t.TempDir())
	res := nclient(t, p, helperArgs{Mode: "perf", MAC: knownMAC, Server: p.ServerIP, Local: p.ClientIP, Port: 67,
		Count: count, Window: 64, Timeout: 5 * time.Minute})
	if res.Err != "" || res.Perf == nil {
		t.Fatalf("perf: %+v", res)
	}
	r := res.Perf
	t.Logf("%d DORA exchanges in %.2fs = %.0f/s (%d lost); server dropped: queue_full=%v",
		r.Done, r.Seconds, float64(r.Done)/r.Seconds, r.Lost, counterValue(s.srv.m.dropped.WithLabelValues("queue_full")))
}
