package nodeedit

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/wwcluster/ww/server/config"
)

// BMCFields are the --bmc-* flags of node/profile add and set.
type BMCFields struct {
	Address      string // an IPv4 address counts up across the names, as --ipaddr
	Username     string
	Password     string
	PasswordFile string
	Interface    string
}

// bmcFlags maps each flag to its field and the bmc key it sets.
func (b *BMCFields) flags() []struct {
	flag string
	v    *string
	dst  func(*config.BMCEntry) **string
} {
	return []struct {
		flag string
		v    *string
		dst  func(*config.BMCEntry) **string
	}{
		{"bmc-address", &b.Address, func(e *config.BMCEntry) **string { return &e.Address }},
		{"bmc-username", &b.Username, func(e *config.BMCEntry) **string { return &e.Username }},
		{"bmc-password", &b.Password, func(e *config.BMCEntry) **string { return &e.Password }},
		{"bmc-password-file", &b.PasswordFile, func(e *config.BMCEntry) **string { return &e.PasswordFile }},
		{"bmc-interface", &b.Interface, func(e *config.BMCEntry) **string { return &e.Interface }},
	}
}

// applyBMC sets the --bmc-* flags given on e's bmc table (name is the
// i-th of the names edited). A password replaces a password file and the
// other way round, as they merge.
func (f *Fields) applyBMC(e *config.Entry, name string, i int) error {
	given := false
	for _, fl := range f.BMC.flags() {
		given = given || f.Given(fl.flag)
	}
	if !given {
		return nil
	}
	if e.BMC == nil {
		e.BMC = &config.BMCEntry{}
	}
	for _, fl := range f.BMC.flags() {
		v := *fl.v
		if fl.flag == "bmc-address" && f.Given(fl.flag) && v != "" {
			var err error
			if v, err = bmcAddress(v, i); err != nil {
				return fmt.Errorf("--bmc-address for %s: %w", name, err)
			}
		}
		f.setString(fl.flag, v, fl.dst(e.BMC))
	}
	if f.Given("bmc-password") && f.BMC.Password != "" {
		e.BMC.PasswordFile = nil
	}
	if f.Given("bmc-password-file") && f.BMC.PasswordFile != "" {
		e.BMC.Password = nil
	}
	if *e.BMC == (config.BMCEntry{}) {
		e.BMC = nil
	}
	return nil
}

// bmcAddress is addr for the i-th name: an IPv4 address (with or without
// a port) counted up by i; anything else only for the first name.
func bmcAddress(addr string, i int) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, ""
	}
	ip, perr := netip.ParseAddr(host)
	if perr != nil || !ip.Is4() {
		if i > 0 {
			return "", fmt.Errorf("%q is not an IPv4 address, so it cannot count up across several names", addr)
		}
		return addr, nil
	}
	next, err := addIPv4(host, i)
	if err != nil {
		return "", err
	}
	if port != "" {
		return net.JoinHostPort(next, port), nil
	}
	return next, nil
}
