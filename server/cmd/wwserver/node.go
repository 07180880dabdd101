package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/hostlist"
	"github.com/wwcluster/ww/server/nodeedit"
)

// entryFlags are the keys a node or profile can be given on the command
// line. Only flags the user set are applied; an empty value unsets a key.
type entryFlags struct {
	profiles        []string
	image           string
	kernel          string
	kernelArgs      []string
	systemOverlays  []string
	runtimeOverlays []string
	root            string
	assetKey        string
	ipxeTemplate    string
	discoverable    bool
	tags            []string
	netdev          string
	hwaddr          string
	ipaddr          string
	netmask         string
	gateway         string
}

func (f *entryFlags) add(cmd *cobra.Command, kind nodeedit.Kind) {
	fl := cmd.Flags()
	if kind == nodeedit.Node {
		fl.StringSliceVar(&f.profiles, "profile", nil, `profiles to merge, in order (add: "default" when it exists)`)
		fl.StringVar(&f.hwaddr, "hwaddr", "", "MAC of the network device (one node only)")
		fl.StringVar(&f.ipaddr, "ipaddr", "", "IPv4 address; counts up across the names (c[01-03] --ipaddr 10.0.0.11: .11, .12, .13)")
	}
	fl.StringVar(&f.image, "image", "", "image name (images/NAME/rootfs)")
	fl.StringVar(&f.kernel, "kernel", "", "kernel path inside the image rootfs")
	// StringArray, not StringSlice: a slice flag is parsed as CSV, which
	// split console=ttyS0,115200n8 in two and choked on quotes.
	fl.StringArrayVar(&f.kernelArgs, "kernel-args", nil,
		`kernel command line argument, taken whole (repeatable: --kernel-args console=ttyS0,115200n8 --kernel-args quiet; --kernel-args "" clears them)`)
	fl.StringSliceVar(&f.systemOverlays, "system-overlays", nil, "system overlays, in order")
	fl.StringSliceVar(&f.runtimeOverlays, "runtime-overlays", nil, "runtime overlays, in order")
	fl.StringVar(&f.root, "root-mode", "", `"tmpfs" or "initramfs" (the root key)`)
	fl.StringVar(&f.assetKey, "asset-key", "", "asset key the node must send")
	fl.StringVar(&f.ipxeTemplate, "ipxe-template", "", "iPXE template name (ipxe/NAME.ipxe)")
	fl.BoolVar(&f.discoverable, "discoverable", false, "give the node (if it has no MAC) to the next unknown MAC that boots")
	fl.StringArrayVar(&f.tags, "tag", nil, "tag KEY=VALUE (repeatable; KEY= removes the tag)")
	fl.StringVar(&f.netdev, "netdev", "eth0", "network device the network flags apply to")
	fl.StringVar(&f.netmask, "netmask", "", "netmask of the network device")
	fl.StringVar(&f.gateway, "gateway", "", "gateway of the network device")
}

// apply sets the flags the user gave on e, the entry of name; i is the
// name's index for --ipaddr.
func (f *entryFlags) apply(cmd *cobra.Command, e *config.Entry, name string, i int) error {
	ch := cmd.Flags().Changed
	str := func(flag, v string, dst **string) {
		if !ch(flag) {
			return
		}
		if v == "" {
			*dst = nil
			return
		}
		*dst = &v
	}
	list := func(flag string, v []string, dst *[]string) {
		if ch(flag) {
			*dst = append([]string(nil), v...)
		}
	}
	list("profile", f.profiles, &e.Profiles)
	str("image", f.image, &e.Image)
	str("kernel", f.kernel, &e.Kernel)
	if ch("kernel-args") {
		args, err := kernelArgs(f.kernelArgs)
		if err != nil {
			return err
		}
		e.KernelArgs = args
	}
	list("system-overlays", f.systemOverlays, &e.SystemOverlays)
	list("runtime-overlays", f.runtimeOverlays, &e.RuntimeOverlays)
	str("root-mode", f.root, &e.Root)
	str("asset-key", f.assetKey, &e.AssetKey)
	str("ipxe-template", f.ipxeTemplate, &e.IPXETemplate)
	if ch("discoverable") {
		v := f.discoverable
		e.Discoverable = &v
	}
	for _, t := range f.tags {
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
	if !ch("hwaddr") && !ch("ipaddr") && !ch("netmask") && !ch("gateway") {
		return nil
	}
	if e.Network == nil {
		e.Network = map[string]*config.NetDevEntry{}
	}
	d := e.Network[f.netdev]
	if d == nil {
		d = &config.NetDevEntry{}
		e.Network[f.netdev] = d
	}
	if ch("hwaddr") && f.hwaddr != "" {
		mac, err := config.NormalizeMAC(f.hwaddr)
		if err == nil {
			err = config.CheckUnicastMAC(mac)
		}
		if err != nil {
			return fmt.Errorf("--hwaddr: %w", err)
		}
		f.hwaddr = mac
	}
	ip := f.ipaddr
	if ch("ipaddr") && ip != "" {
		var err error
		if ip, err = addIPv4(ip, i); err != nil {
			return fmt.Errorf("--ipaddr: %w", err)
		}
		if ch("netmask") && f.netmask != "" {
			if err := inSubnet(f.ipaddr, ip, f.netmask); err != nil {
				return fmt.Errorf("--ipaddr %s counts up to %s for %s: %w", f.ipaddr, ip, name, err)
			}
		}
	}
	str("hwaddr", f.hwaddr, &d.HWAddr)
	str("ipaddr", ip, &d.IPAddr)
	str("netmask", f.netmask, &d.Netmask)
	str("gateway", f.gateway, &d.Gateway)
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

func expandNames(pattern string) ([]string, error) {
	names, err := hostlist.Expand(pattern)
	if err != nil {
		return nil, err
	}
	return names, nil
}

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Add, change, delete, list and import nodes (written to nodes.d/, never to nodes.toml)",
		Long: `node edits the machine-managed files under nodes.d/ (new entries go to nodes.d/managed.toml);
nodes.toml is the admin's own file and is only read. Every edit is validated like a hand edit,
written atomically under a lock, and picked up by a running server without a restart.
NAMES are hostlists: "c[001-100],gpu01".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newEntryAddCmd(nodeedit.Node), newEntrySetCmd(nodeedit.Node), newEntryDeleteCmd(nodeedit.Node),
		newNodeListCmd(), newNodeImportCmd())
	return cmd
}

func newProfileCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "Add, change, delete and list profiles (written to nodes.d/, never to nodes.toml)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newEntryAddCmd(nodeedit.Profile), newEntrySetCmd(nodeedit.Profile), newEntryDeleteCmd(nodeedit.Profile),
		newProfileListCmd())
	return cmd
}

func newEntryAddCmd(kind nodeedit.Kind) *cobra.Command {
	var (
		root string
		f    entryFlags
	)
	cmd := &cobra.Command{
		Use:   "add NAMES",
		Short: fmt.Sprintf("Add %ss (hostlist NAMES)", kind),
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := expandNames(args[0])
			if err != nil {
				return err
			}
			if f.hwaddr != "" && len(names) > 1 {
				return fmt.Errorf("--hwaddr with %d names: a MAC belongs to one node (use node import for a list)", len(names))
			}
			_, err = nodeedit.New(root).Edit(func(t *nodeedit.Tree) error {
				for i, name := range names {
					e := &config.Entry{}
					if kind == nodeedit.Node && !cmd.Flags().Changed("profile") && t.File(nodeedit.Profile, "default") != "" {
						e.Profiles = []string{"default"}
					}
					if err := f.apply(cmd, e, name, i); err != nil {
						return err
					}
					if err := t.Add(kind, name, e); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %d %s(s): %s\n", len(names), kind, hostlist.Compress(names))
			return nil
		},
	}
	addRootFlag(cmd, &root)
	f.add(cmd, kind)
	return cmd
}

func newEntrySetCmd(kind nodeedit.Kind) *cobra.Command {
	var (
		root string
		f    entryFlags
	)
	cmd := &cobra.Command{
		Use:   "set NAMES --KEY VALUE…",
		Short: fmt.Sprintf("Change %ss (an empty value unsets a key)", kind),
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := expandNames(args[0])
			if err != nil {
				return err
			}
			if cmd.Flags().NFlag() == 0 || (cmd.Flags().NFlag() == 1 && cmd.Flags().Changed("root")) {
				return fmt.Errorf("nothing to set: give at least one --KEY VALUE")
			}
			if f.hwaddr != "" && len(names) > 1 {
				return fmt.Errorf("--hwaddr with %d names: a MAC belongs to one node", len(names))
			}
			_, err = nodeedit.New(root).Edit(func(t *nodeedit.Tree) error {
				for i, name := range names {
					e, err := t.Get(kind, name)
					if err != nil {
						return err
					}
					if err := f.apply(cmd, e, name, i); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "changed %d %s(s): %s\n", len(names), kind, hostlist.Compress(names))
			return nil
		},
	}
	addRootFlag(cmd, &root)
	f.add(cmd, kind)
	return cmd
}

func newEntryDeleteCmd(kind nodeedit.Kind) *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "delete NAMES",
		Short: fmt.Sprintf("Delete %ss (refused when the result would not load, e.g. a profile still in use)", kind),
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := expandNames(args[0])
			if err != nil {
				return err
			}
			_, err = nodeedit.New(root).Edit(func(t *nodeedit.Tree) error {
				for _, name := range names {
					if err := t.Delete(kind, name); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %d %s(s): %s\n", len(names), kind, hostlist.Compress(names))
			return nil
		},
	}
	addRootFlag(cmd, &root)
	return cmd
}

func newNodeListCmd() *cobra.Command {
	var (
		root   string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:     "list [NAMES]",
		Aliases: []string{"ls"},
		Short:   "List nodes as resolved (profiles merged), optionally only NAMES (a hostlist)",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nodes, err := config.LoadNodesTree(root)
			if err != nil {
				return err
			}
			list := nodes.List
			if len(args) == 1 {
				names, err := expandNames(args[0])
				if err != nil {
					return err
				}
				list = nil
				for _, n := range names {
					node := nodes.ByName[n]
					if node == nil {
						return fmt.Errorf("no node named %q", n)
					}
					list = append(list, node)
				}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if list == nil {
					list = []*config.Node{}
				}
				return enc.Encode(list)
			}
			printNodes(cmd.OutOrStdout(), list)
			return nil
		},
	}
	addRootFlag(cmd, &root)
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON instead of a table")
	return cmd
}

// profileRow is one profile as written, with the file that defines it.
type profileRow struct {
	Name string `json:"name"`
	File string `json:"file"`
	*config.Entry
}

func newProfileListCmd() *cobra.Command {
	var (
		root   string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:     "list [DIR]",
		Aliases: []string{"ls"},
		Short:   "List profiles as written, with the file that defines each",
		RunE: func(cmd *cobra.Command, _ []string) error {
			srcs, err := config.NodesSources(root)
			if err != nil {
				return err
			}
			if _, err := config.ParseNodesFiles(srcs); err != nil {
				return err
			}
			var rows []profileRow
			for _, src := range srcs {
				var f config.File
				if err := toml.Unmarshal(src.Data, &f); err != nil {
					return fmt.Errorf("%s: %w", src.Path, err)
				}
				for name, e := range f.Profiles {
					if e == nil {
						e = &config.Entry{}
					}
					rel, _ := filepath.Rel(root, src.Path)
					rows = append(rows, profileRow{Name: name, File: rel, Entry: e})
				}
			}
			sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if rows == nil {
					rows = []profileRow{}
				}
				return enc.Encode(rows)
			}
			printProfiles(cmd.OutOrStdout(), rows)
			return nil
		},
	}
	addTreeArg(cmd, &root)
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON instead of a table")
	return cmd
}

func printProfiles(w io.Writer, rows []profileRow) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFILE\tIMAGE\tSYSTEM OVERLAYS\tRUNTIME OVERLAYS\tKERNEL ARGS")
	val := func(p *string) string {
		if p == nil || *p == "" {
			return "-"
		}
		return *p
	}
	join := func(l []string) string {
		if len(l) == 0 {
			return "-"
		}
		return strings.Join(l, ",")
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.File, val(r.Image), join(r.SystemOverlays),
			join(r.RuntimeOverlays), strings.Join(r.KernelArgs, " "))
	}
	_ = tw.Flush()
}
