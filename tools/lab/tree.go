package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Node is a lab node: name, the MAC of its (only) NIC eth0, its address.
type Node struct {
	Name string
	MAC  string
	IP   string
	// AssetKey, when set, is the node's asset_key; boot its VM with the
	// same VMOptions.AssetTag (the SMBIOS chassis asset tag wwclient reads).
	AssetKey string
	// Bootloader, when set, is the node's bootloader ("ipxe" or "grub").
	Bootloader string
	// Boot, when set, is the node's boot mode ("initrd" or "twostage").
	Boot string
	// KernelArgs and SystemOverlays, when set, replace the profile's
	// (make bench-boot boots one node with the earlier defaults).
	KernelArgs, SystemOverlays []string
	// NetworkDrivers, when set, is the node's network_drivers.
	NetworkDrivers []string
}

// LabNode returns node i (1-based): n00i, MAC 52:54:00:99:00:i, 10.99.0.(10+i).
func LabNode(i int) Node {
	return Node{
		Name: fmt.Sprintf("n%03d", i),
		MAC:  fmt.Sprintf("52:54:00:99:%02x:%02x", i>>8&0xff, i&0xff),
		IP:   fmt.Sprintf("10.99.0.%d", 10+i),
	}
}

// UnknownMAC is a MAC that no lab tree lists.
const UnknownMAC = "52:54:00:99:ee:01"

// TreeOptions for WriteTree.
type TreeOptions struct {
	Nodes []Node
	// UpdateInterval is wwclient's heartbeat/runtime overlay interval
	// (default "5s").
	UpdateInterval string
	// KernelArgs for the default profile (default console=ttyS0 panic=-1
	// no_timer_check: with QEMU's -no-reboot a panic ends the VM at once;
	// under TCG on a loaded host the kernel's IO-APIC timer check can run
	// out of time and panic "IO-APIC + timer doesn't work", so skip it).
	KernelArgs []string
	// InitKernelArgs (with KernelArgs nil): the kernel_args `wwserver init`
	// wrote (the shipped default, e.g. quiet) without its console= entries,
	// after DefaultKernelArgs (the lab's serial console and TCG workarounds):
	// make lab and make bench-boot boot what a new user's tree boots.
	InitKernelArgs bool
	// ImageName under images/ (default: the one `wwserver init` made).
	ImageName string
	// SystemOverlays and RuntimeOverlays of the default profile (default
	// wwinit and generic). Overlays other than those two must be put under
	// TreeDir/overlays/ by the caller before nodes boot.
	SystemOverlays, RuntimeOverlays []string
	// Boot is the default profile's boot key ("initrd" or "twostage";
	// empty: not set, i.e. twostage for iPXE nodes).
	Boot string
	// Shim and GRUB, when set, are wwserver.toml's grub.shim and grub.grub
	// (e.g. build/secureboot from make bootloaders).
	Shim, GRUB string
	// ShimARM64 and GRUBARM64, when set, are grub.shim_arm64 and
	// grub.grub_arm64.
	ShimARM64, GRUBARM64 string
	// Arch is the image's architecture (GOARCH name; default amd64): the
	// OCI archive says so and the import picks it with --platform linux/ARCH.
	Arch string
	// TLS enables [tls] (runtime overlay and heartbeats over HTTPS on
	// :9874, the certificate and pin `wwserver init` made).
	TLS bool
}

// DefaultKernelArgs are the lab nodes' kernel arguments (see TreeOptions.KernelArgs).
func DefaultKernelArgs() []string { return []string{"console=ttyS0", "panic=-1", "no_timer_check"} }

// kernelArgs is the default profile's kernel_args; written is what
// wwserver init wrote.
func (opts TreeOptions) kernelArgs(written any) []string {
	switch {
	case opts.KernelArgs != nil:
		return opts.KernelArgs
	case opts.InitKernelArgs:
		return withInitKernelArgs(written)
	}
	return DefaultKernelArgs()
}

// withInitKernelArgs is DefaultKernelArgs followed by the entries of
// written (the kernel_args wwserver init wrote) that are not console= (the
// lab reads the serial console: ttyS0 must stay the last console) and not
// already there.
func withInitKernelArgs(written any) []string {
	args := DefaultKernelArgs()
	list, _ := written.([]any)
	for _, v := range list {
		a, ok := v.(string)
		if ok && !strings.HasPrefix(a, "console=") && !slices.Contains(args, a) {
			args = append(args, a)
		}
	}
	return args
}

// WriteTree runs `wwserver init DIR --wwclient BIN` into Dir/tree, packages
// the lab image as an OCI archive and imports it over the placeholder image
// with `wwserver image import` (so every lab boot runs through import), and adapts wwserver.toml and nodes.toml to the lab: the server
// address on the bridge, DHCP on the bridge with a pool for unknown MACs,
// TFTP from the iPXE directory, a short update interval and the given nodes.
// Keys `wwserver init` wrote that the lab does not set are kept.
func (l *Lab) WriteTree(ctx context.Context, opts TreeOptions) error {
	if opts.UpdateInterval == "" {
		opts.UpdateInterval = "5s"
	}
	dir := filepath.Join(l.Dir, "tree")
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%s exists", dir)
	}
	out, err := run(ctx, l.Paths.Wwserver, "init", dir, "--wwclient", l.Paths.Wwclient,
		"--address", l.ServerIP, "--listen", fmt.Sprintf(":%d", l.Port))
	if err != nil {
		return err
	}
	l.Log.Info("wwserver init", "dir", dir, "out", string(bytes.TrimSpace([]byte(out))))
	l.TreeDir = dir
	archive := filepath.Join(l.Dir, "image.oci.tar")
	arch := opts.Arch
	if arch == "" {
		arch = "amd64"
	}
	if err := WriteOCIArchiveFor(l.Paths.Image, archive, arch); err != nil {
		return err
	}
	out, err = run(ctx, l.Paths.Wwserver, "image", "import", "--quiet", "--platform", "linux/"+arch, archive, "default", "--root", dir)
	os.Remove(archive) // as large as the image; the imported tree is what serves
	if err != nil {
		return err
	}
	l.Log.Info("wwserver image import", "out", string(bytes.TrimSpace([]byte(out))))

	// wwserver.toml
	srv := map[string]any{}
	if err := decodeFile(filepath.Join(dir, "wwserver.toml"), &srv); err != nil {
		return err
	}
	srv["address"] = l.ServerIP
	srv["listen"] = fmt.Sprintf(":%d", l.Port)
	srv["update_interval"] = opts.UpdateInterval
	dhcp := subTable(srv, "dhcp")
	dhcp["enabled"] = true
	dhcp["mode"] = "reservation"
	dhcp["interface"] = l.Bridge
	dhcp["range_start"] = DefaultRangeStart
	dhcp["range_end"] = DefaultRangeEnd
	dhcp["netmask"] = DefaultNetmask
	dhcp["router"] = ""
	dhcp["lease_time"] = "1h"
	tftp := subTable(srv, "tftp")
	tftp["enabled"] = true
	tftp["listen"] = ":69"
	tftp["dir"] = l.Paths.IPXEDir
	for _, f := range []struct{ key, val string }{
		{"shim", opts.Shim}, {"grub", opts.GRUB}, {"shim_arm64", opts.ShimARM64}, {"grub_arm64", opts.GRUBARM64},
	} {
		if f.val != "" {
			subTable(srv, "grub")[f.key] = f.val
		}
	}
	if opts.TLS {
		subTable(srv, "tls")["enabled"] = true
	}
	if err := encodeFile(filepath.Join(dir, "wwserver.toml"), srv); err != nil {
		return err
	}

	// nodes.toml: the default profile, then the nodes.
	nodes := map[string]any{}
	if err := decodeFile(filepath.Join(dir, "nodes.toml"), &nodes); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	profiles := subTable(nodes, "profiles")
	def := subTable(profiles, "default")
	img := opts.ImageName
	if img == "" {
		img, err = pickImage(dir, def["image"])
		if err != nil {
			return err
		}
	}
	def["image"] = img
	def["kernel_args"] = opts.kernelArgs(def["kernel_args"])
	if opts.SystemOverlays != nil {
		def["system_overlays"] = opts.SystemOverlays
	} else if _, ok := def["system_overlays"]; !ok {
		def["system_overlays"] = []string{"wwinit"}
	}
	if opts.RuntimeOverlays != nil {
		def["runtime_overlays"] = opts.RuntimeOverlays
	} else if _, ok := def["runtime_overlays"]; !ok {
		def["runtime_overlays"] = []string{"generic"}
	}
	if _, ok := def["root"]; !ok {
		def["root"] = "tmpfs"
	}
	if opts.Boot != "" {
		def["boot"] = opts.Boot
	}
	l.profiles = profiles
	return l.SetNodes(opts.Nodes)
}

// SetNodes rewrites nodes.toml with the lab's profiles and exactly these
// nodes. The file is replaced atomically (write + rename), as an admin's
// editor or config management would.
func (l *Lab) SetNodes(nodes []Node) error {
	if l.TreeDir == "" {
		return errors.New("SetNodes before WriteTree")
	}
	nt := map[string]any{}
	for _, n := range nodes {
		entry := map[string]any{
			"profiles": []string{"default"},
			"network": map[string]any{
				"eth0": map[string]any{
					"hwaddr":  n.MAC,
					"ipaddr":  n.IP,
					"netmask": DefaultNetmask,
					"gateway": "",
					"primary": true,
				},
			},
		}
		if n.AssetKey != "" {
			entry["asset_key"] = n.AssetKey
		}
		if n.Bootloader != "" {
			entry["bootloader"] = n.Bootloader
		}
		if n.Boot != "" {
			entry["boot"] = n.Boot
		}
		if n.KernelArgs != nil {
			entry["kernel_args"] = n.KernelArgs
		}
		if n.NetworkDrivers != nil {
			entry["network_drivers"] = n.NetworkDrivers
		}
		if n.SystemOverlays != nil {
			entry["system_overlays"] = n.SystemOverlays
		}
		nt[n.Name] = entry
	}
	doc := map[string]any{"profiles": l.profiles, "nodes": nt}
	return encodeFile(filepath.Join(l.TreeDir, "nodes.toml"), doc)
}

func pickImage(tree string, current any) (string, error) {
	if s, ok := current.(string); ok && s != "" {
		if st, err := os.Stat(filepath.Join(tree, "images", s, "rootfs")); err == nil && st.IsDir() {
			return s, nil
		}
	}
	ents, err := os.ReadDir(filepath.Join(tree, "images"))
	if err != nil {
		return "", fmt.Errorf("wwserver init made no images/: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) != 1 {
		return "", fmt.Errorf("want exactly one image under %s/images, found %v", tree, names)
	}
	return names[0], nil
}

func subTable(m map[string]any, key string) map[string]any {
	if t, ok := m[key].(map[string]any); ok {
		return t
	}
	t := map[string]any{}
	m[key] = t
	return t
}

func decodeFile(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if _, err := toml.Decode(string(data), v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// encodeFile writes v as TOML to path atomically.
func encodeFile(path string, v any) error {
	var buf bytes.Buffer
	buf.WriteString("# written by tools/lab\n")
	if err := toml.NewEncoder(&buf).Encode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
