package netrender

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/config"
)

// The files each stack gets for this node are checked with the stack's own
// tools from Debian 12: nmcli --offline (NetworkManager 1.42), systemd-networkd
// and udevadm (systemd 252) and ifquery (ifupdown 0.8). make unit unpacks
// network-manager, libnm0, ifupdown and udev under build/nettools
// (WW_NETTOOLS) rather than installing them: their packages would start
// daemons that take over this machine's network.
const toolNodes = `[nodes.n1]
image = "img"
dns = ["10.0.0.1", "fd00::1"]
search = ["cluster.test"]
[nodes.n1.network.eth0]
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.0.0.11"
netmask = "255.255.255.0"
gateway = "10.0.0.1"
[nodes.n1.network.eth1]
hwaddr = "52:54:00:00:00:02"
ipaddr = "10.1.0.11"
netmask = "255.255.0.0"
mtu = 9000
ipaddr6 = "fd01::11"
prefix6 = 48
[nodes.n1.network.vlan7]
type = "vlan"
id = 7
parent = "eth1"
ipaddr = "10.7.0.11"
netmask = "255.255.255.0"
[nodes.n1.network.eth2]
hwaddr = "52:54:00:00:00:03"
[nodes.n1.network.eth3]
hwaddr = "52:54:00:00:00:04"
[nodes.n1.network.bond0]
type = "bond"
members = ["eth2", "eth3"]
mode = "802.3ad"
ipaddr = "10.2.0.11"
netmask = "255.255.255.0"
[nodes.n1.network.ib0]
type = "infiniband"
hwaddr = "80:00:00:48:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:0b:0c"
ipaddr = "10.3.0.11"
netmask = "255.255.255.0"
mtu = 65520
`

func toolNode(t *testing.T) *config.Node {
	t.Helper()
	ns, err := config.ParseNodes("nodes.toml", []byte(toolNodes))
	if err != nil {
		t.Fatal(err)
	}
	return ns.ByName["n1"]
}

// writeKinds writes the files of kinds for stack into a new directory.
func writeKinds(t *testing.T, stack string, kinds ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // networkd reads as systemd-network
		t.Fatal(err)
	}
	for _, k := range kinds {
		files, err := Files(k, stack, toolNode(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(dir, f.Name), []byte(f.Content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func netTools(t *testing.T) string {
	dir := os.Getenv("WW_NETTOOLS")
	if dir == "" {
		t.Skip("run by make unit (WW_NETTOOLS=build/nettools: Debian's nmcli, ifquery, udevadm unpacked)")
	}
	return dir
}

func toolCmd(ctx context.Context, tools, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(tools, bin), args...)
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+filepath.Join(tools, "usr/lib/x86_64-linux-gnu"))
	return cmd
}

func TestNetworkManagerKeyfilesNmcliOffline(t *testing.T) {
	tools := netTools(t)
	dir := writeKinds(t, config.StackNetworkManager, KindNetworkManager)
	want := map[string][]string{
		"ww-eth0.nmconnection":  {"address1=10.0.0.11/24,10.0.0.1", "dns=10.0.0.1;", "dns-search=cluster.test;", "mac-address=52:54:00:00:00:01"},
		"ww-eth1.nmconnection":  {"mtu=9000", "address1=10.1.0.11/16", "address1=fd01::11/48"},
		"ww-vlan7.nmconnection": {"id=7", "parent=eth1", "address1=10.7.0.11/24"},
		"ww-bond0.nmconnection": {"mode=802.3ad", "address1=10.2.0.11/24"},
		"ww-eth2.nmconnection":  {"master=bond0", "slave-type=bond"},
		"ww-ib0.nmconnection":   {"type=infiniband", "mtu=65520", "transport-mode=connected"},
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 7 {
		t.Fatalf("%d keyfiles, %v", len(ents), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// nmcli --offline reads a keyfile on stdin, applies the change and
	// prints the connection as NetworkManager would store it, or refuses it.
	normalize := func(in []byte) (string, error) {
		cmd := toolCmd(ctx, tools, "usr/bin/nmcli", "--offline", "connection", "modify", "connection.zone", "")
		cmd.Stdin = strings.NewReader(string(in))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, e := range ents {
		src, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := normalize(src)
		if err != nil {
			t.Errorf("%s refused: %v\n%s\n%s", e.Name(), err, out, src)
			continue
		}
		for _, w := range want[e.Name()] {
			if !strings.Contains(out, "\n"+w+"\n") {
				t.Errorf("%s: nmcli's reading lacks %q:\n%s", e.Name(), w, out)
			}
		}
	}
	// the tool does refuse a broken keyfile
	src, _ := os.ReadFile(filepath.Join(dir, "ww-eth1.nmconnection"))
	if out, err := normalize([]byte(strings.Replace(string(src), "method=manual", "method=bogus", 1))); err == nil {
		t.Fatalf("nmcli accepted a bogus method:\n%s", out)
	}
}

func TestIfupdownInterfacesIfquery(t *testing.T) {
	tools := netTools(t)
	dir := writeKinds(t, config.StackIfupdown, KindIfupdown)
	file := filepath.Join(dir, "interfaces")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := toolCmd(ctx, tools, "sbin/ifquery", "-i", file, "-a", "--list").CombinedOutput()
	if err != nil {
		t.Fatalf("ifquery: %v\n%s", err, out)
	}
	if got, want := strings.Fields(string(out)), "lo eth0 bond0 eth1 eth2 eth3 ib0 vlan7"; strings.Join(got, " ") != want {
		t.Errorf("ifquery --list: %q, want %q", got, want)
	}
	for dev, lines := range map[string][]string{
		"vlan7": {"address: 10.7.0.11", "vlan-raw-device: eth1"},
		"eth1":  {"mtu: 9000", "netmask: 255.255.0.0"},
		"bond0": {"bond-slaves: eth2 eth3", "bond-mode: 802.3ad"},
		"ib0":   {"mtu: 65520"},
	} {
		out, err := toolCmd(ctx, tools, "sbin/ifquery", "-i", file, dev).CombinedOutput()
		if err != nil {
			t.Fatalf("ifquery %s: %v\n%s", dev, err, out)
		}
		for _, l := range lines {
			if !strings.Contains(string(out), l+"\n") {
				t.Errorf("ifquery %s lacks %q:\n%s", dev, l, out)
			}
		}
	}
	// the tool does refuse a broken file
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("auto eth0\niface eth0 inet bogus\n"), 0o644)
	if out, err := toolCmd(ctx, tools, "sbin/ifquery", "-i", bad, "-a", "--list").CombinedOutput(); err == nil {
		t.Fatalf("ifquery accepted a bogus method:\n%s", out)
	}
}

// parseWarning is how systemd reports a bad line: FILE:LINE: message.
var parseWarning = regexp.MustCompile(`/etc/systemd/network/([^:]+):\d+: .*`)

// TestNetworkdFilesParse starts Debian's systemd-networkd in a private mount
// and network namespace with the rendered files as /etc/systemd/network,
// reads its log until it has loaded them and enumerated links, and fails on
// any line it reports as bad. A file with an unknown key is added as a
// control: its warning must appear. (This kernel cannot make bonds or vlans,
// so the devices are not brought up here.)
func TestNetworkdFilesParse(t *testing.T) {
	netTools(t)
	if os.Getuid() != 0 {
		t.Skip("run by make unit as root (namespaces)")
	}
	networkd := "/lib/systemd/systemd-networkd"
	if _, err := os.Stat(networkd); err != nil {
		t.Fatalf("%s: %v (Debian's systemd package, in TEST_PACKAGES)", networkd, err)
	}
	dir := writeKinds(t, config.StackNetworkd, KindNetworkd, KindLinks)
	os.WriteFile(filepath.Join(dir, "99-control.network"), []byte("[Match]\nName=x\n[Network]\nNoSuchKey=1\n"), 0o644)
	script := `set -e
mount -t tmpfs tmpfs /run
mount -t sysfs sysfs /sys
mkdir -p /run/systemd/netif
chown systemd-network: /run/systemd/netif
mount --bind "$1" /etc/systemd/network
ip link set lo up
SYSTEMD_LOG_LEVEL=debug SYSTEMD_LOG_TARGET=console exec "$2"`
	lines := runUntil(t, "Enumeration completed", "unshare", "--mount", "--net", "sh", "-c", script, "sh", dir, networkd)
	bad := map[string]bool{}
	for _, l := range lines {
		if m := parseWarning.FindStringSubmatch(l); m != nil {
			bad[m[1]] = true
			if m[1] != "99-control.network" {
				t.Errorf("networkd: %s", l)
			}
		}
	}
	if !bad["99-control.network"] {
		t.Fatalf("networkd did not report the control file's unknown key; log:\n%s", strings.Join(lines, "\n"))
	}
	for _, want := range []string{"bond0: loaded \"bond\"", "vlan7: loaded \"vlan\""} {
		if !strings.Contains(strings.Join(lines, "\n"), want) {
			t.Errorf("networkd log lacks %q", want)
		}
	}
	// udev reads the .link files (they name cards by MAC in every stack)
	script = `set -e
mount -t tmpfs tmpfs /run
mount -t sysfs sysfs /sys
mount --bind "$1" /etc/systemd/network
ip link set lo up
exec "$2" test-builtin net_setup_link /sys/class/net/lo`
	out, err := exec.Command("unshare", "--mount", "--net", "sh", "-c", script, "sh", dir, filepath.Join(os.Getenv("WW_NETTOOLS"), "bin/udevadm")).CombinedOutput()
	if err != nil {
		t.Fatalf("udevadm: %v\n%s", err, out)
	}
	for _, d := range []string{"eth0", "eth1", "eth2", "eth3"} {
		if !strings.Contains(string(out), `Parsed configuration file "/etc/systemd/network/10-ww-`+d+`.link"`) {
			t.Errorf("udev did not parse 10-ww-%s.link:\n%s", d, out)
		}
	}
	if m := parseWarning.FindString(string(out)); m != "" {
		t.Errorf("udev: %s", m)
	}
}

// runUntil runs a command, collecting its output lines until one contains
// done (or a minute passes), then kills it.
func runUntil(t *testing.T, done string, name string, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		pr.Close()
	}()
	var lines []string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.Contains(sc.Text(), done) {
			return lines
		}
	}
	t.Fatalf("%s ended before %q:\n%s", name, done, strings.Join(lines, "\n"))
	return nil
}
