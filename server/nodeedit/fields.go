package nodeedit

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi"
)

// Fields are the keys a node or profile can be given on the command line,
// by flag. Only the flags Given reports are applied; an empty value unsets
// a key.
type Fields struct {
	Profiles        []string
	Image           string
	Kernel          string
	KernelArgs      []string
	NetworkDrivers  []string // kernel modules (config.CheckModuleName); "" alone unsets
	SystemOverlays  []string
	RuntimeOverlays []string
	Root            string
	Boot            string // "initrd" or "twostage"
	Bootloader      string
	AssetKey        string
	IPXETemplate    string
	Discoverable    bool
	Tags            []string
	NetDev          string
	HWAddr          string
	IPAddr          string
	Netmask         string
	Gateway         string
	BMC             BMCFields // --bmc-* (bmcfields.go)

	// Given reports whether the user gave a flag ("image", "kernel-args", …).
	Given func(flag string) bool
}

// setString sets *dst to v when flag was given; "" unsets it.
func (f *Fields) setString(flag, v string, dst **string) {
	if !f.Given(flag) {
		return
	}
	if v == "" {
		*dst = nil
		return
	}
	*dst = &v
}

// Apply sets the fields the user gave on e, the entry of name; i is the
// name's index for --ipaddr.
func (f *Fields) Apply(e *config.Entry, name string, i int) error {
	if err := f.applyKeys(e); err != nil {
		return err
	}
	if err := f.applyBMC(e, name, i); err != nil {
		return err
	}
	return f.applyNetwork(e, name, i)
}

// applyKeys sets everything but the network device.
func (f *Fields) applyKeys(e *config.Entry) error {
	ch := f.Given
	str := f.setString
	list := func(flag string, v []string, dst *[]string) {
		if ch(flag) {
			*dst = append([]string(nil), v...)
		}
	}
	list("profile", f.Profiles, &e.Profiles)
	str("image", f.Image, &e.Image)
	str("kernel", f.Kernel, &e.Kernel)
	if ch("kernel-args") {
		args, err := kernelArgs(f.KernelArgs)
		if err != nil {
			return err
		}
		e.KernelArgs = args
	}
	if ch("network-drivers") {
		drivers, err := networkDrivers(f.NetworkDrivers)
		if err != nil {
			return err
		}
		e.NetworkDrivers = drivers
	}
	list("system-overlays", f.SystemOverlays, &e.SystemOverlays)
	list("runtime-overlays", f.RuntimeOverlays, &e.RuntimeOverlays)
	str("root-mode", f.Root, &e.Root)
	str("boot", f.Boot, &e.Boot)
	str("bootloader", f.Bootloader, &e.Bootloader)
	str("asset-key", f.AssetKey, &e.AssetKey)
	str("ipxe-template", f.IPXETemplate, &e.IPXETemplate)
	if ch("discoverable") {
		v := f.Discoverable
		e.Discoverable = &v
	}
	for _, t := range f.Tags {
		k, v, ok := strings.Cut(t, "=")
		if !ok || k == "" {
			return fmt.Errorf("--tag %q: want KEY=VALUE", t)
		}
		if e.Tags == nil {
			e.Tags = map[string]string{}
		}
		if v == "" {
			delete(e.Tags, k)
		} else {
			e.Tags[k] = v
		}
	}
	return nil
}

// applyNetwork sets the network flags on e's device NetDev.
func (f *Fields) applyNetwork(e *config.Entry, name string, i int) error {
	ch := f.Given
	str := f.setString
	if !ch("hwaddr") && !ch("ipaddr") && !ch("netmask") && !ch("gateway") {
		return nil
	}
	if e.Network == nil {
		e.Network = map[string]*config.NetDevEntry{}
	}
	d := e.Network[f.NetDev]
	if d == nil {
		d = &config.NetDevEntry{}
		e.Network[f.NetDev] = d
	}
	if ch("hwaddr") && f.HWAddr != "" {
		mac, err := nodeapi.NormalizeMAC(f.HWAddr)
		if err == nil {
			err = config.CheckUnicastMAC(mac)
		}
		if err != nil {
			return fmt.Errorf("--hwaddr: %w", err)
		}
		f.HWAddr = mac
	}
	ip := f.IPAddr
	if ch("ipaddr") && ip != "" {
		var err error
		if ip, err = addIPv4(ip, i); err != nil {
			return fmt.Errorf("--ipaddr: %w", err)
		}
		if ch("netmask") && f.Netmask != "" {
			if err := inSubnet(f.IPAddr, ip, f.Netmask); err != nil {
				return fmt.Errorf("--ipaddr %s counts up to %s for %s: %w", f.IPAddr, ip, name, err)
			}
		}
	}
	str("hwaddr", f.HWAddr, &d.HWAddr)
	str("ipaddr", ip, &d.IPAddr)
	str("netmask", f.Netmask, &d.Netmask)
	str("gateway", f.Gateway, &d.Gateway)
	return nil
}

// kernelArgs checks the --kernel-args values and drops empty ones (a lone
// "" clears the list).
func kernelArgs(in []string) ([]string, error) {
	var out []string
	for _, a := range in {
		if a == "" {
			continue
		}
		if err := config.CheckKernelArg(a); err != nil {
			return nil, fmt.Errorf("--kernel-args: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// networkDrivers checks the --network-drivers values and drops empty ones
// (a lone "" unsets the key).
func networkDrivers(in []string) ([]string, error) {
	var out []string
	for _, m := range in {
		if m != "" {
			out = append(out, m)
		}
	}
	if err := config.CheckNetworkDrivers(out); err != nil {
		return nil, fmt.Errorf("--network-drivers: %w", err)
	}
	return out, nil
}

// inSubnet reports why ip, counted up from start, cannot be a host's
// address in start's network (netmask): outside it, or its network or
// broadcast address. (Counting up meets the broadcast address before
// leaving a network of /30 or larger; a /31 or /32 has none, and is left
// at once.) Without --netmask the config validation still refuses network
// and broadcast addresses, with the netmask the node gets from its
// profiles.
func inSubnet(start, ip, netmask string) error {
	bits := config.PrefixLen(netmask)
	s, err1 := netip.ParseAddr(start)
	a, err2 := netip.ParseAddr(ip)
	if bits < 0 || err1 != nil || err2 != nil {
		return nil // reported by the config validation
	}
	p, err := s.Prefix(bits)
	if err != nil {
		return nil
	}
	if !p.Contains(a) {
		return fmt.Errorf("%s is outside %s (netmask %s); give fewer names or another start address", ip, p, netmask)
	}
	return config.CheckHostAddr(ip, netmask)
}

// addIPv4 returns start + n, refusing to wrap past 255.255.255.255.
func addIPv4(start string, n int) (string, error) {
	ip := net.ParseIP(start).To4()
	if ip == nil {
		return "", fmt.Errorf("%q is not an IPv4 address", start)
	}
	v := uint64(binary.BigEndian.Uint32(ip)) + uint64(n)
	if v > 0xffffffff {
		return "", fmt.Errorf("%s + %d is past 255.255.255.255", start, n)
	}
	out := make(net.IP, 4)
	binary.BigEndian.PutUint32(out, uint32(v))
	return out.String(), nil
}
