package config

import "strconv"

// networkEntry writes a node's or profile's network_stack, dns and search.
func (e *encoder) networkEntry(en *NetworkEntry) {
	e.str("network_stack", en.NetworkStack)
	e.list("dns", en.DNS)
	e.list("search", en.Search)
}

// devExtra writes a device's type, MTU, IPv6, bond and vlan keys.
func (e *encoder) devExtra(x *NetDevExtraEntry) {
	e.str("type", x.Type)
	e.integer("mtu", x.MTU)
	e.boolean("onboot", x.OnBoot)
	e.str("ipaddr6", x.IPAddr6)
	e.integer("prefix6", x.Prefix6)
	e.list("members", x.Members)
	e.str("mode", x.Mode)
	e.integer("id", x.ID)
	e.str("parent", x.Parent)
}

func (e *encoder) integer(key string, v *int) {
	if v != nil {
		e.line(key + " = " + strconv.Itoa(*v))
	}
}
