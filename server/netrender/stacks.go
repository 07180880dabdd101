package netrender

import (
	"fmt"
	"strings"

	"github.com/wwcluster/ww/server/config"
)

// section writes an INI section (NetworkManager keyfile, systemd unit
// syntax): a header and key=value lines, empty values left out.
type section struct {
	b *strings.Builder
}

func (s section) head(name string) section {
	fmt.Fprintf(s.b, "\n[%s]\n", name)
	return s
}

func (s section) kv(k, v string) section {
	if v != "" {
		fmt.Fprintf(s.b, "%s=%s\n", k, v)
	}
	return s
}

func itoa0(i int) string {
	if i == 0 {
		return ""
	}
	return fmt.Sprint(i)
}

// networkManager renders one keyfile per device: ww-DEV.nmconnection.
func networkManager(n *config.Node) []File {
	v4dns, v6dns := dnsSplit(n)
	out := make([]File, 0, len(n.Network))
	for _, d := range n.Network {
		var b strings.Builder
		fmt.Fprintf(&b, "# rendered by wwserver for %s, device %s\n", n.Name, d.Name)
		s := section{&b}
		nmType := map[string]string{config.NetEthernet: "ethernet", config.NetInfiniband: "infiniband",
			config.NetBond: "bond", config.NetVLAN: "vlan"}[d.Type]
		b.WriteString("[connection]\n")
		s.kv("id", "ww-"+d.Name).kv("uuid", uuid(n.Name, d.Name)).kv("type", nmType).
			kv("interface-name", d.Name).kv("autoconnect", fmt.Sprint(d.OnBoot))
		master := d.Master(n.Network)
		if master != "" {
			s.kv("master", master).kv("slave-type", "bond")
		}
		switch d.Type {
		case config.NetEthernet:
			s.head("ethernet").kv("mac-address", strings.ToUpper(d.HWAddr)).kv("mtu", itoa0(d.MTU))
		case config.NetInfiniband:
			mode := "datagram"
			if connectedMode(d) {
				mode = "connected"
			}
			s.head("infiniband").kv("mac-address", strings.ToUpper(d.HWAddr)).kv("mtu", itoa0(d.MTU)).kv("transport-mode", mode)
		case config.NetBond:
			s.head("bond").kv("mode", d.Mode).kv("miimon", "100")
			if d.MTU != 0 {
				s.head("ethernet").kv("mtu", itoa0(d.MTU))
			}
		case config.NetVLAN:
			s.head("vlan").kv("id", fmt.Sprint(d.VLANID)).kv("parent", d.Parent)
			if d.MTU != 0 {
				s.head("ethernet").kv("mtu", itoa0(d.MTU))
			}
		}
		if master == "" {
			nmIP(s, n, d, v4dns, v6dns)
		}
		out = append(out, File{"ww-" + d.Name + ".nmconnection", b.String()})
	}
	return out
}

// nmIP writes the ipv4 and ipv6 sections of a device that is not a bond member.
func nmIP(s section, n *config.Node, d config.NetDev, v4dns, v6dns []string) {
	primary := d.Primary
	s.head("ipv4")
	switch {
	case d.IPAddr != "":
		addr := cidr(d.IPAddr, d.Netmask)
		if d.Gateway != "" {
			addr += "," + d.Gateway
		}
		s.kv("method", "manual").kv("address1", addr)
	case isParent(n, d.Name):
		s.kv("method", "disabled")
	default:
		s.kv("method", "auto")
	}
	if primary {
		s.kv("dns", joinSemi(v4dns)).kv("dns-search", joinSemi(n.Search))
	}
	s.head("ipv6")
	if d.IPAddr6 != "" {
		s.kv("method", "manual").kv("address1", fmt.Sprintf("%s/%d", d.IPAddr6, d.Prefix6))
		if primary {
			s.kv("dns", joinSemi(v6dns))
		}
	} else {
		s.kv("method", "ignore")
	}
}

func joinSemi(list []string) string {
	if len(list) == 0 {
		return ""
	}
	return strings.Join(list, ";") + ";"
}

// links renders a .link file per ethernet device with a MAC: udev names the
// card with that permanent address DEV (a bond or vlan sharing the MAC has
// no permanent address, so it is not matched). Loaded before
// 99-default.link; the first matching file wins.
func links(n *config.Node) []File {
	var out []File
	for _, d := range n.Network {
		if d.Type != config.NetEthernet || d.HWAddr == "" {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "# rendered by wwserver for %s: the card %s is %s\n[Match]\n", n.Name, d.HWAddr, d.Name)
		section{&b}.kv("PermanentMACAddress", d.HWAddr).head("Link").kv("Name", d.Name)
		out = append(out, File{"10-ww-" + d.Name + ".link", b.String()})
	}
	return out
}

// networkd renders 20-ww-DEV.netdev for bonds and vlans and
// 30-ww-DEV.network for every device.
func networkd(n *config.Node) []File {
	var out []File
	for _, d := range n.Network {
		var b strings.Builder
		s := section{&b}
		switch d.Type {
		case config.NetBond:
			fmt.Fprintf(&b, "# rendered by wwserver for %s\n[NetDev]\n", n.Name)
			s.kv("Name", d.Name).kv("Kind", "bond").kv("MTUBytes", itoa0(d.MTU))
			s.head("Bond").kv("Mode", d.Mode).kv("MIIMonitorSec", "100ms")
		case config.NetVLAN:
			fmt.Fprintf(&b, "# rendered by wwserver for %s\n[NetDev]\n", n.Name)
			s.kv("Name", d.Name).kv("Kind", "vlan").kv("MTUBytes", itoa0(d.MTU))
			s.head("VLAN").kv("Id", fmt.Sprint(d.VLANID))
		}
		if b.Len() > 0 {
			out = append(out, File{"20-ww-" + d.Name + ".netdev", b.String()})
		}
		out = append(out, File{"30-ww-" + d.Name + ".network", networkdNetwork(n, d)})
	}
	return out
}

func networkdNetwork(n *config.Node, d config.NetDev) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# rendered by wwserver for %s, device %s\n[Match]\n", n.Name, d.Name)
	s := section{&b}
	s.kv("Name", d.Name)
	s.head("Link").kv("MTUBytes", itoa0(d.MTU))
	if !d.OnBoot {
		s.kv("ActivationPolicy", "manual")
	}
	if !d.Primary {
		s.kv("RequiredForOnline", "no")
	}
	// systemd 252 (Debian 12) has no [IPoIB] section in .network files
	// (checked: "Unknown section"): an MTU above 4092 needs connected mode,
	// set by the ipoib driver's defaults or a udev rule in the image.
	s.head("Network")
	if m := d.Master(n.Network); m != "" {
		s.kv("Bond", m)
		return b.String()
	}
	for _, v := range n.Network {
		if v.Type == config.NetVLAN && v.Parent == d.Name {
			s.kv("VLAN", v.Name)
		}
	}
	switch {
	case d.IPAddr != "":
		s.kv("Address", cidr(d.IPAddr, d.Netmask)).kv("Gateway", d.Gateway)
	case isParent(n, d.Name):
		s.kv("LinkLocalAddressing", "no")
	default:
		s.kv("DHCP", "ipv4")
	}
	if d.IPAddr6 != "" {
		s.kv("Address", fmt.Sprintf("%s/%d", d.IPAddr6, d.Prefix6))
	}
	if d.Primary {
		for _, ns := range n.DNS {
			s.kv("DNS", ns)
		}
		s.kv("Domains", strings.Join(n.Search, " "))
	}
	return b.String()
}

// ifupdown renders /etc/network/interfaces: every device when the stack is
// ifupdown, only the loopback otherwise (ifupdown would otherwise bring the
// devices up too, and Debian's NetworkManager leaves devices listed there alone).
func ifupdown(n *config.Node, all bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# ifupdown configuration for %s, rendered by wwserver (wwinit overlay).\n", n.Name)
	if !all {
		b.WriteString("# The node's network stack is not ifupdown: its devices are configured there.\n")
	} else {
		b.WriteString("# wwclient already configures the primary interface at boot; ifup then finds\n# the address in place.\n")
	}
	b.WriteString("auto lo\niface lo inet loopback\n")
	if !all {
		return b.String()
	}
	for _, d := range n.Network {
		ifupdownDev(&b, n, d)
	}
	return b.String()
}

func ifupdownDev(b *strings.Builder, n *config.Node, d config.NetDev) {
	b.WriteString("\n")
	if d.OnBoot {
		fmt.Fprintf(b, "auto %s\n", d.Name)
	}
	master := d.Master(n.Network)
	method := "dhcp"
	switch {
	case d.IPAddr != "":
		method = "static"
	case master != "" || isParent(n, d.Name):
		method = "manual"
	}
	fmt.Fprintf(b, "iface %s inet %s\n", d.Name, method)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(b, "\t%s %s\n", k, v)
		}
	}
	line("address", d.IPAddr)
	if d.IPAddr != "" {
		line("netmask", d.Netmask)
		line("gateway", d.Gateway)
	}
	line("mtu", itoa0(d.MTU))
	line("bond-master", master)
	switch d.Type {
	case config.NetBond:
		line("bond-slaves", strings.Join(d.Members, " "))
		line("bond-mode", d.Mode)
		line("bond-miimon", "100")
	case config.NetVLAN:
		line("vlan-raw-device", d.Parent)
	}
	if d.Primary && d.IPAddr != "" {
		line("dns-nameservers", strings.Join(n.DNS, " "))
		line("dns-search", strings.Join(n.Search, " "))
	}
	if d.IPAddr6 != "" {
		fmt.Fprintf(b, "iface %s inet6 static\n\taddress %s/%d\n", d.Name, d.IPAddr6, d.Prefix6)
	}
}
