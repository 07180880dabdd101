package config

import (
	"strings"
	"testing"
)

const netBase = `[nodes.n1]
image = "img"
network_stack = "networkd"
dns = ["10.0.0.1", "fd00::1"]
search = ["cluster.local"]
[nodes.n1.network.eth0]
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.0.0.11"
netmask = "255.255.255.0"
gateway = "10.0.0.1"
primary = true
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
onboot = false
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

func TestNetDevFields(t *testing.T) {
	ns, err := ParseNodes("nodes.toml", []byte(netBase))
	if err != nil {
		t.Fatal(err)
	}
	n := ns.ByName["n1"]
	if n.NetworkStack != StackNetworkd || len(n.DNS) != 2 || n.Search[0] != "cluster.local" {
		t.Errorf("network conf %+v", n.NetworkConf)
	}
	got := map[string]NetDev{}
	for _, d := range n.Network {
		got[d.Name] = d
	}
	if d := got["eth1"]; d.Type != NetEthernet || d.MTU != 9000 || d.IPAddr6 != "fd01::11" || d.Prefix6 != 48 || !d.OnBoot {
		t.Errorf("eth1 %+v", d)
	}
	if d := got["vlan7"]; d.VLANID != 7 || d.Parent != "eth1" {
		t.Errorf("vlan7 %+v", d)
	}
	if d := got["bond0"]; d.Mode != "802.3ad" || len(d.Members) != 2 || got["eth2"].Master(n.Network) != "bond0" {
		t.Errorf("bond0 %+v", d)
	}
	if got["eth2"].OnBoot {
		t.Error("eth2 onboot = false lost")
	}
	if d := got["ib0"]; d.Type != NetInfiniband || !strings.HasSuffix(d.HWAddr, "0a:0b:0c") {
		t.Errorf("ib0 %+v", d)
	}
	// What the editor writes reads back the same.
	f, err := DecodeNodesFile(Source{Path: "nodes.toml", Data: []byte(netBase)})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteNodesFile(&b, f); err != nil {
		t.Fatal(err)
	}
	f2, err := DecodeNodesFile(Source{Path: "x.toml", Data: []byte(b.String())})
	if err != nil {
		t.Fatal(err)
	}
	if !SameEntry(f.Nodes["n1"], f2.Nodes["n1"]) {
		t.Errorf("encoded entry differs:\n%s", b.String())
	}
}

func TestNetDevRefused(t *testing.T) {
	cases := []struct {
		name, edit, want string
	}{
		{"vlan without parent", "[nodes.n1.network.vlan9]\ntype = \"vlan\"\nid = 9\n", "nodes.n1.network.vlan9.parent: a vlan needs a parent"},
		{"vlan bad parent", "[nodes.n1.network.vlan9]\ntype = \"vlan\"\nid = 9\nparent = \"eth9\"\n", `vlan9.parent: "eth9" is not another network device`},
		{"vlan id range", "[nodes.n1.network.vlan9]\ntype = \"vlan\"\nid = 5000\nparent = \"eth1\"\n", "vlan9.id: a vlan needs an id from 1 to 4094"},
		{"bond member not a netdev", "[nodes.n1.network.bond1]\ntype = \"bond\"\nmembers = [\"eth7\"]\n", `bond1.members: "eth7" is not a network device`},
		{"member in two bonds", "[nodes.n1.network.bond1]\ntype = \"bond\"\nmembers = [\"eth2\"]\n", `is already a member of bond`},
		{"member with address", "[nodes.n1.network.bond1]\ntype = \"bond\"\nmembers = [\"eth1\"]\n", `"eth1" has an address of its own`},
		{"bad bond mode", "[nodes.n1.network.bond1]\ntype = \"bond\"\nmode = \"fast\"\nmembers = [\"eth5\"]\n[nodes.n1.network.eth5]\nhwaddr = \"52:54:00:00:00:09\"\n", `bond1.mode: "fast" is not a bonding mode`},
		{"two primaries", "[nodes.n1.network.eth5]\nhwaddr = \"52:54:00:00:00:09\"\nprimary = true\n", "2 devices are marked primary"},
		{"gateway outside netmask", "[nodes.n1.network.eth5]\nhwaddr = \"52:54:00:00:00:09\"\nipaddr = \"10.9.0.5\"\nnetmask = \"255.255.255.0\"\ngateway = \"10.8.0.1\"\n", "eth5.gateway: gateway 10.8.0.1 is outside 10.9.0.0/24"},
		{"mtu range", "[nodes.n1.network.eth5]\nhwaddr = \"52:54:00:00:00:09\"\nmtu = 70000\n", "eth5.mtu: 70000 is out of range"},
		{"bad type", "[nodes.n1.network.eth5]\ntype = \"wifi\"\n", `eth5.type: must be`},
		{"ib short hwaddr", "[nodes.n1.network.ib1]\ntype = \"infiniband\"\nhwaddr = \"52:54:00:00:00:09\"\n", "ib1.hwaddr: \"52:54:00:00:00:09\" is not an IPoIB"},
		{"parent on ethernet", "[nodes.n1.network.eth5]\nparent = \"eth1\"\n", "eth5.parent: only a vlan has a parent"},
		{"bad ipv6", "[nodes.n1.network.eth5]\nipaddr6 = \"10.0.0.1\"\n", `eth5.ipaddr6: "10.0.0.1" is not an IPv6 address`},
		{"bad stack", "[nodes.n2]\nimage = \"img\"\nnetwork_stack = \"wicked\"\n", `nodes.n2.network_stack: must be`},
		{"bad dns", "[nodes.n2]\nimage = \"img\"\ndns = [\"ns1\"]\n", `nodes.n2.dns: "ns1" is not an IP address`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := netBase + tc.edit
			_, err := ParseNodes("nodes.toml", []byte(src))
			if err == nil {
				t.Fatalf("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
			// file:line:key
			if !strings.HasPrefix(err.Error(), "nodes.toml:") || strings.HasPrefix(err.Error(), "nodes.toml: ") {
				t.Errorf("error %q has no line", err)
			}
		})
	}
}
