package artifact

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/wwcluster/ww/overlays"
)

const netNodesTOML = `
[profiles.default]
image = "debian"
system_overlays = ["wwinit"]
runtime_overlays = ["generic"]
dns = ["10.0.2.1"]
search = ["cluster.test"]

[nodes.n001]
profiles = ["default"]
[nodes.n001.network.eth0]
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.0.2.11"
netmask = "255.255.255.0"
[nodes.n001.network.eth1]
hwaddr = "52:54:00:00:00:11"
ipaddr = "10.5.0.11"
netmask = "255.255.255.0"
mtu = 9000
[nodes.n001.network.vlan7]
type = "vlan"
id = 7
parent = "eth1"
ipaddr = "10.7.0.11"
netmask = "255.255.255.0"
`

// The real wwinit overlay renders the network files of the stack the image
// has (network_stack auto), each keyfile 0600, and nothing of the others.
func TestNetworkFilesByImageStack(t *testing.T) {
	tt := newTree(t)
	tt.file("images/debian/rootfs/boot/vmlinuz-6.1.0-28-amd64", "kernel", 0o644)
	if err := overlays.Write(filepath.Join(tt.root, "overlays", "wwinit"), "wwinit"); err != nil {
		t.Fatal(err)
	}
	tt.dir("overlays/generic", 0o755)
	b, _ := newBuilder(t, tt.root)
	snap := snapshot(t, netNodesTOML)
	n := snap.Nodes.ByName["n001"]
	render := func() map[string]archFile {
		a, err := b.SystemOverlay(bg, snap, n)
		if err != nil {
			t.Fatal(err)
		}
		return unpack(t, a)
	}
	const nmDir = "etc/NetworkManager/system-connections/"
	// no stack in the image: ifupdown, as before
	files := render()
	if f, ok := files["etc/network/interfaces"]; !ok || !strings.Contains(f.data, "iface vlan7 inet static\n\taddress 10.7.0.11\n") ||
		!strings.Contains(f.data, "vlan-raw-device eth1") || !strings.Contains(f.data, "\tmtu 9000\n") {
		t.Fatalf("interfaces: %q", f.data)
	}
	if _, ok := files["etc/resolv.conf"]; !ok {
		t.Error("no resolv.conf for ifupdown")
	}
	for p := range files {
		if strings.HasPrefix(p, nmDir) || strings.HasSuffix(p, ".network") || strings.HasSuffix(p, ".ww") {
			t.Errorf("ifupdown node got %s", p)
		}
	}
	if f := files["etc/systemd/network/10-ww-eth1.link"]; !strings.Contains(f.data, "PermanentMACAddress=52:54:00:00:00:11\n") {
		t.Errorf("eth1.link: %q", f.data)
	}
	// NetworkManager installed: keyfiles, 0600; interfaces keeps only lo
	tt.file("images/debian/rootfs/usr/sbin/NetworkManager", "nm", 0o755)
	files = render()
	for _, d := range []string{"eth0", "eth1", "vlan7"} {
		f, ok := files[nmDir+"ww-"+d+".nmconnection"]
		if !ok {
			t.Fatalf("no keyfile for %s: %v", d, keys(files))
		}
		if f.hdr.Mode.Perm() != 0o600 {
			t.Errorf("%s keyfile mode %v", d, f.hdr.Mode)
		}
	}
	if _, ok := files[nmDir+"ww.nmconnection"]; ok {
		t.Error("the template's own empty file was written")
	}
	if strings.Contains(files["etc/network/interfaces"].data, "eth0") {
		t.Errorf("interfaces names devices under NetworkManager:\n%s", files["etc/network/interfaces"].data)
	}
	if _, ok := files["etc/resolv.conf"]; ok {
		t.Error("resolv.conf written under NetworkManager (it writes its own)")
	}
	// network_stack set on the node wins over the image
	snap2 := snapshot(t, strings.Replace(netNodesTOML, "[nodes.n001]\n", "[nodes.n001]\nnetwork_stack = \"networkd\"\n", 1))
	a, err := b.SystemOverlay(bg, snap2, snap2.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	files = unpack(t, a)
	for _, p := range []string{"etc/systemd/network/30-ww-eth1.network", "etc/systemd/network/20-ww-vlan7.netdev",
		"etc/systemd/system/multi-user.target.d/ww-networkd.conf"} {
		if _, ok := files[p]; !ok {
			t.Errorf("networkd node lacks %s: %v", p, keys(files))
		}
	}
	if f := files["etc/systemd/network/30-ww-eth1.network"]; !strings.Contains(f.data, "VLAN=vlan7\n") || !strings.Contains(f.data, "MTUBytes=9000\n") {
		t.Errorf("eth1.network: %q", f.data)
	}
}

func keys(m map[string]archFile) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
