package config

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Network device types (netdev key "type"; unset: ethernet).
const (
	NetEthernet   = "ethernet"
	NetInfiniband = "infiniband"
	NetBond       = "bond"
	NetVLAN       = "vlan"
)

// Network stacks a node's network devices are rendered for (node or
// profile key network_stack; unset: auto, chosen by what the image has).
const (
	StackAuto           = "auto"
	StackNetworkManager = "networkmanager"
	StackNetworkd       = "networkd"
	StackIfupdown       = "ifupdown"
)

// BondModes are the Linux bonding modes a bond may name (unset:
// active-backup, which needs nothing from the switch).
var BondModes = []string{"balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"}

// MTU bounds: IPv4's minimum, IPoIB connected mode's maximum.
const (
	MinMTU = 68
	MaxMTU = 65520
)

// NetDevExtra is what a network device has besides its MAC and IPv4
// address: type, MTU, IPv6, bond and VLAN settings. Zero values are unset.
type NetDevExtra struct {
	Type    string   `json:"type"`              // NetEthernet (default), NetInfiniband, NetBond, NetVLAN
	MTU     int      `json:"mtu,omitempty"`     // 0: the kernel's default
	OnBoot  bool     `json:"onboot"`            // brought up at boot (default true)
	IPAddr6 string   `json:"ipaddr6,omitempty"` // static IPv6 address
	Prefix6 int      `json:"prefix6,omitempty"` // its prefix length (default 64)
	Members []string `json:"members,omitempty"` // bond: the devices enslaved
	Mode    string   `json:"mode,omitempty"`    // bond: bonding mode (default active-backup)
	VLANID  int      `json:"vlan_id,omitempty"` // vlan: 802.1Q id
	Parent  string   `json:"parent,omitempty"`  // vlan: the device it is on
}

// Master returns the bond dev is a member of, or "".
func (d NetDev) Master(all []NetDev) string {
	for _, b := range all {
		if b.Type == NetBond && slices.Contains(b.Members, d.Name) {
			return b.Name
		}
	}
	return ""
}

// NetDevExtraEntry is NetDevExtra as written in a network table.
type NetDevExtraEntry struct {
	Type    *string  `toml:"type"`
	MTU     *int     `toml:"mtu"`
	OnBoot  *bool    `toml:"onboot"`
	IPAddr6 *string  `toml:"ipaddr6"`
	Prefix6 *int     `toml:"prefix6"`
	Members []string `toml:"members"`
	Mode    *string  `toml:"mode"`
	ID      *int     `toml:"id"`
	Parent  *string  `toml:"parent"`
}

func (e *NetDevExtraEntry) infiniband() bool { return e.Type != nil && *e.Type == NetInfiniband }

// merge sets the fields of d that are set over e.
func (e *NetDevExtraEntry) merge(d *NetDevExtraEntry) {
	setp(&e.Type, d.Type)
	setp(&e.MTU, d.MTU)
	setp(&e.OnBoot, d.OnBoot)
	setp(&e.IPAddr6, d.IPAddr6)
	setp(&e.Prefix6, d.Prefix6)
	setp(&e.Mode, d.Mode)
	setp(&e.ID, d.ID)
	setp(&e.Parent, d.Parent)
	if d.Members != nil {
		e.Members = append([]string(nil), d.Members...)
	}
}

func setp[T any](dst **T, src *T) {
	if src != nil {
		*dst = src
	}
}

// NetworkConf is the node-wide network settings: which stack the devices
// are rendered for and the resolver (set on a profile for the cluster).
type NetworkConf struct {
	NetworkStack string   `json:"network_stack"` // a Stack* constant; "" is auto
	DNS          []string `json:"dns,omitempty"`
	Search       []string `json:"search,omitempty"`
}

// NetworkEntry is NetworkConf as written on a node or profile.
type NetworkEntry struct {
	NetworkStack *string  `toml:"network_stack"`
	DNS          []string `toml:"dns"`
	Search       []string `toml:"search"`
}

func (c *NetworkConf) merge(e *NetworkEntry) {
	if e.NetworkStack != nil {
		c.NetworkStack = *e.NetworkStack
	}
	if e.DNS != nil {
		c.DNS = append([]string(nil), e.DNS...)
	}
	if e.Search != nil {
		c.Search = append([]string(nil), e.Search...)
	}
}

// checkNetworkConf checks network_stack, dns and search.
func (c *nodeCheck) checkNetworkConf(n *Node) {
	switch n.NetworkStack {
	case "":
		n.NetworkStack = StackAuto
	case StackAuto, StackNetworkManager, StackNetworkd, StackIfupdown:
	default:
		c.nfail(c.key+".network_stack", "must be %q, %q, %q or %q, got %q",
			StackAuto, StackNetworkManager, StackNetworkd, StackIfupdown, n.NetworkStack)
	}
	for _, s := range n.DNS {
		if _, err := netip.ParseAddr(s); err != nil {
			c.nfail(c.key+".dns", "%q is not an IP address", s)
		}
	}
	for _, s := range n.Search {
		if !isDomain(s) {
			c.nfail(c.key+".search", "%q is not a domain name", s)
		}
	}
}

func isDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// checkDevExtra checks one merged device's own extra fields (those naming
// other devices are checked by checkDevLinks).
func (c *nodeCheck) checkDevExtra(dk string, rd *NetDevEntry, dev *NetDev) {
	x := &rd.NetDevExtraEntry
	dev.Type = NetEthernet
	if x.Type != nil && *x.Type != "" {
		dev.Type = *x.Type
	}
	switch dev.Type {
	case NetEthernet, NetInfiniband, NetBond, NetVLAN:
	default:
		c.nfail(dk+".type", "must be %q, %q, %q or %q, got %q", NetEthernet, NetInfiniband, NetBond, NetVLAN, dev.Type)
	}
	if dev.Type == NetInfiniband && rd.HWAddr != nil && *rd.HWAddr != "" {
		hw, err := net.ParseMAC(*rd.HWAddr)
		if err != nil || len(hw) != 20 {
			c.nfail(dk+".hwaddr", "%q is not an IPoIB hardware address (20 bytes, as in `ip link show ib0`)", *rd.HWAddr)
		} else {
			dev.HWAddr = hw.String()
		}
	}
	if (dev.Type == NetBond || dev.Type == NetVLAN) && dev.HWAddr != "" {
		c.nfail(dk+".hwaddr", "a %s has no MAC of its own to match (it takes its members' or parent's)", dev.Type)
	}
	if x.MTU != nil {
		dev.MTU = *x.MTU
		if dev.MTU < MinMTU || dev.MTU > MaxMTU {
			c.nfail(dk+".mtu", "%d is out of range (%d-%d)", dev.MTU, MinMTU, MaxMTU)
		}
	}
	dev.OnBoot = x.OnBoot == nil || *x.OnBoot
	c.checkIPv6(dk, x, dev)
	c.checkKindFields(dk, x, dev)
}

func (c *nodeCheck) checkIPv6(dk string, x *NetDevExtraEntry, dev *NetDev) {
	if x.IPAddr6 != nil && *x.IPAddr6 != "" {
		a, err := netip.ParseAddr(*x.IPAddr6)
		if err != nil || !a.Is6() || a.Is4In6() {
			c.nfail(dk+".ipaddr6", "%q is not an IPv6 address", *x.IPAddr6)
		} else {
			dev.IPAddr6 = a.String()
			dev.Prefix6 = 64
		}
	}
	if x.Prefix6 != nil {
		if dev.IPAddr6 == "" && (x.IPAddr6 == nil || *x.IPAddr6 == "") {
			c.nfail(dk+".prefix6", "set without ipaddr6")
		} else if *x.Prefix6 < 1 || *x.Prefix6 > 128 {
			c.nfail(dk+".prefix6", "%d is out of range (1-128)", *x.Prefix6)
		} else if dev.IPAddr6 != "" {
			dev.Prefix6 = *x.Prefix6
		}
	}
}

// checkKindFields checks the bond and vlan keys against the type.
func (c *nodeCheck) checkKindFields(dk string, x *NetDevExtraEntry, dev *NetDev) {
	if dev.Type == NetBond {
		dev.Members = append([]string(nil), x.Members...)
		dev.Mode = "active-backup"
		if x.Mode != nil && *x.Mode != "" {
			dev.Mode = *x.Mode
		}
		if !slices.Contains(BondModes, dev.Mode) {
			c.nfail(dk+".mode", "%q is not a bonding mode (%s)", dev.Mode, strings.Join(BondModes, ", "))
		}
		if len(dev.Members) == 0 {
			c.nfail(dk+".members", "a bond needs members (the devices it bonds)")
		}
	} else {
		if x.Members != nil {
			c.nfail(dk+".members", "only a bond has members (type = %q)", NetBond)
		}
		if x.Mode != nil {
			c.nfail(dk+".mode", "only a bond has a mode (type = %q)", NetBond)
		}
	}
	if dev.Type == NetVLAN {
		if x.ID == nil || *x.ID < 1 || *x.ID > 4094 {
			c.nfail(dk+".id", "a vlan needs an id from 1 to 4094")
		} else {
			dev.VLANID = *x.ID
		}
		if x.Parent == nil || *x.Parent == "" {
			c.nfail(dk+".parent", "a vlan needs a parent (the device it is on)")
		} else {
			dev.Parent = *x.Parent
		}
		return
	}
	if x.ID != nil {
		c.nfail(dk+".id", "only a vlan has an id (type = %q)", NetVLAN)
	}
	if x.Parent != nil {
		c.nfail(dk+".parent", "only a vlan has a parent (type = %q)", NetVLAN)
	}
}

// checkDevLinks checks what refers to other devices of n: bond members and
// vlan parents must be devices of the node, a member belongs to one bond and
// has no address of its own, and a gateway lies inside its device's network.
func (c *nodeCheck) checkDevLinks(n *Node) {
	byName := map[string]*NetDev{}
	for i := range n.Network {
		byName[n.Network[i].Name] = &n.Network[i]
	}
	master := map[string]string{}
	for _, d := range n.Network {
		dk := c.key + ".network." + d.Name
		for _, m := range d.Members {
			md, ok := byName[m]
			switch {
			case !ok:
				c.nfail(dk+".members", "%q is not a network device of this node", m)
			case m == d.Name || md.Type == NetBond || md.Type == NetVLAN:
				c.nfail(dk+".members", "%q is a %s; bond members are ethernet or infiniband devices", m, md.Type)
			case master[m] != "":
				c.nfail(dk+".members", "%q is already a member of bond %q", m, master[m])
			case md.IPAddr != "" || md.IPAddr6 != "":
				c.nfail(dk+".members", "%q has an address of its own; a bond member's address is the bond's", m)
			default:
				master[m] = d.Name
			}
		}
		if d.Type == NetVLAN && d.Parent != "" {
			if p, ok := byName[d.Parent]; !ok || d.Parent == d.Name {
				c.nfail(dk+".parent", "%q is not another network device of this node", d.Parent)
			} else if p.Type == NetVLAN {
				c.nfail(dk+".parent", "%q is a vlan itself", d.Parent)
			}
		}
		if err := checkGateway(d); err != nil {
			c.nfail(dk+".gateway", "%v", err)
		}
	}
}

// checkGateway reports a gateway outside the device's own network.
func checkGateway(d NetDev) error {
	if d.Gateway == "" {
		return nil
	}
	if d.IPAddr == "" {
		return fmt.Errorf("gateway %s set without ipaddr", d.Gateway)
	}
	bits := PrefixLen(d.Netmask)
	if bits < 0 {
		return nil // no netmask: the classful default applies, nothing to check
	}
	p, err := netip.ParseAddr(d.IPAddr)
	g, gerr := netip.ParseAddr(d.Gateway)
	if err != nil || gerr != nil {
		return nil
	}
	pfx := netip.PrefixFrom(p, bits).Masked()
	if !pfx.Contains(g) {
		return fmt.Errorf("gateway %s is outside %s (ipaddr %s, netmask %s)", d.Gateway, pfx, d.IPAddr, d.Netmask)
	}
	return nil
}

// defaultPrimary is the index of the device that is primary when none is
// marked: the first ethernet device (the one that PXE-boots), else the first.
func defaultPrimary(devs []NetDev) int {
	for i, d := range devs {
		if d.Type == NetEthernet {
			return i
		}
	}
	return 0
}
