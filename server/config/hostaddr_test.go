package config

import (
	"strings"
	"testing"
)

// TestNodeAddressesMustBeHosts (issue 20, Low 11): a node's MAC must be a
// network card's (not all zeros, broadcast or multicast) and its address
// not the network or broadcast address of its netmask; errors name file,
// line and key.
func TestNodeAddressesMustBeHosts(t *testing.T) {
	node := func(dev string) string {
		return "[nodes.n1]\nimage = \"img\"\n[nodes.n1.network.eth0]\n" + dev
	}
	for _, c := range []struct{ dev, want string }{
		{`hwaddr = "ff:ff:ff:ff:ff:ff"`, "nodes.toml:4: nodes.n1.network.eth0.hwaddr: MAC ff:ff:ff:ff:ff:ff is the broadcast address"},
		{`hwaddr = "00-00-00-00-00-00"`, "nodes.toml:4: nodes.n1.network.eth0.hwaddr: MAC 00:00:00:00:00:00 is all zeros"},
		{`hwaddr = "01:00:5E:00:00:01"`, "nodes.toml:4: nodes.n1.network.eth0.hwaddr: MAC 01:00:5e:00:00:01 is a multicast address"},
		{"hwaddr = \"52:54:00:00:00:01\"\nipaddr = \"10.8.0.255\"\nnetmask = \"255.255.255.0\"",
			"nodes.toml:5: nodes.n1.network.eth0.ipaddr: 10.8.0.255 is the broadcast address of 10.8.0.0/24 (netmask 255.255.255.0)"},
		{"hwaddr = \"52:54:00:00:00:01\"\nipaddr = \"10.8.1.0\"\nnetmask = \"255.255.255.0\"",
			"nodes.toml:5: nodes.n1.network.eth0.ipaddr: 10.8.1.0 is the network address of 10.8.1.0/24"},
		{"hwaddr = \"52:54:00:00:00:01\"\nipaddr = \"10.8.0.127\"\nnetmask = \"255.255.255.128\"",
			"10.8.0.127 is the broadcast address of 10.8.0.0/25"},
	} {
		_, err := ParseNodes("nodes.toml", []byte(node(c.dev)))
		if err == nil || !strings.HasPrefix(err.Error(), "nodes.toml:") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.dev, err, c.want)
		}
	}
	for _, dev := range []string{
		`hwaddr = "02:00:00:00:00:01"`,
		"hwaddr = \"52:54:00:00:00:01\"\nipaddr = \"10.8.0.254\"\nnetmask = \"255.255.255.0\"",
		"hwaddr = \"52:54:00:00:00:01\"\nipaddr = \"10.8.0.255\"\nnetmask = \"255.255.0.0\"",
		"hwaddr = \"52:54:00:00:00:01\"\nipaddr = \"10.8.0.0\"\nnetmask = \"255.255.255.254\"", // /31: both are hosts
		"hwaddr = \"52:54:00:00:00:01\"\nipaddr = \"10.8.0.255\"",                              // no netmask: not checked
	} {
		if _, err := ParseNodes("nodes.toml", []byte(node(dev))); err != nil {
			t.Errorf("%s: %v", dev, err)
		}
	}
}
