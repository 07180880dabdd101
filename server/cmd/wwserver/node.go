package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/hostkeys"
	"github.com/wwcluster/ww/server/hostlist"
	"github.com/wwcluster/ww/server/nodeedit"
)

// entryFlags are the keys a node or profile can be given on the command
// line (nodeedit.Fields, one flag each).
type entryFlags struct{ nodeedit.Fields }

func (f *entryFlags) add(cmd *cobra.Command, kind nodeedit.Kind) {
	fl := cmd.Flags()
	if kind == nodeedit.Node {
		fl.StringSliceVar(&f.Profiles, "profile", nil, `profiles to merge, in order (add: "default" when it exists)`)
		fl.StringVar(&f.HWAddr, "hwaddr", "", "MAC of the network device (one node only)")
		fl.StringVar(&f.IPAddr, "ipaddr", "", "IPv4 address; counts up across the names (c[01-03] --ipaddr 10.0.0.11: .11, .12, .13)")
	}
	fl.StringVar(&f.Image, "image", "", "image name (images/NAME/rootfs)")
	fl.StringVar(&f.Kernel, "kernel", "", "kernel path inside the image rootfs")
	// StringArray, not StringSlice: a slice flag is parsed as CSV, which
	// split console=ttyS0,115200n8 in two and choked on quotes.
	fl.StringArrayVar(&f.KernelArgs, "kernel-args", nil,
		`kernel command line argument, taken whole (repeatable: --kernel-args console=ttyS0,115200n8 --kernel-args quiet; --kernel-args "" clears them)`)
	fl.StringSliceVar(&f.NetworkDrivers, "network-drivers", nil,
		`kernel modules a two-stage node's first stage gets, e.g. virtio_net,e1000e (--network-drivers "" unsets it)`)
	fl.StringSliceVar(&f.SystemOverlays, "system-overlays", nil, "system overlays, in order")
	fl.StringSliceVar(&f.RuntimeOverlays, "runtime-overlays", nil, "runtime overlays, in order")
	fl.StringVar(&f.Root, "root-mode", "", `"tmpfs" or "initramfs" (the root key)`)
	fl.StringVar(&f.Boot, "boot", "", `"initrd" (iPXE loads the image) or "twostage" (wwclient fetches the chunked image)`)
	fl.StringVar(&f.Bootloader, "bootloader", "", `"ipxe" or "grub" (shim + GRUB: UEFI Secure Boot); unset: the server's bootloader`)
	fl.StringVar(&f.AssetKey, "asset-key", "", "asset key the node must send")
	fl.StringVar(&f.IPXETemplate, "ipxe-template", "", "iPXE template name (ipxe/NAME.ipxe)")
	fl.BoolVar(&f.Discoverable, "discoverable", false, "give the node (if it has no MAC) to the next unknown MAC that boots")
	fl.StringArrayVar(&f.Tags, "tag", nil, "tag KEY=VALUE (repeatable; KEY= removes the tag)")
	fl.StringVar(&f.NetDev, "netdev", "eth0", "network device the network flags apply to")
	fl.StringVar(&f.Netmask, "netmask", "", "netmask of the network device")
	fl.StringVar(&f.Gateway, "gateway", "", "gateway of the network device")
	addBMCFlags(cmd, &f.BMC)
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
			names, err := hostlist.Expand(args[0])
			if err != nil {
				return err
			}
			if f.HWAddr != "" && len(names) > 1 {
				return fmt.Errorf("--hwaddr with %d names: a MAC belongs to one node (use node import for a list)", len(names))
			}
			f.Given = cmd.Flags().Changed
			if err := nodeedit.New(root).AddEntries(kind, names, &f.Fields); err != nil {
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
			names, err := hostlist.Expand(args[0])
			if err != nil {
				return err
			}
			if cmd.Flags().NFlag() == 0 || (cmd.Flags().NFlag() == 1 && cmd.Flags().Changed("root")) {
				return fmt.Errorf("nothing to set: give at least one --KEY VALUE")
			}
			if f.HWAddr != "" && len(names) > 1 {
				return fmt.Errorf("--hwaddr with %d names: a MAC belongs to one node", len(names))
			}
			f.Given = cmd.Flags().Changed
			if err := nodeedit.New(root).SetEntries(kind, names, &f.Fields); err != nil {
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
			names, err := hostlist.Expand(args[0])
			if err != nil {
				return err
			}
			if err := nodeedit.New(root).DeleteEntries(kind, names); err != nil {
				return err
			}
			if kind == nodeedit.Node { // their SSH host keys go with them (ssh.go)
				if err := hostkeys.New(root).Remove(names); err != nil {
					return fmt.Errorf("deleted, but: %w", err)
				}
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
				if list, err = nodeedit.SelectNodes(nodes, args[0]); err != nil {
					return err
				}
			}
			if asJSON {
				if list == nil {
					list = []*config.Node{}
				}
				return writeJSON(cmd.OutOrStdout(), list)
			}
			nodeedit.WriteNodes(cmd.OutOrStdout(), list)
			return nil
		},
	}
	addRootFlag(cmd, &root)
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON instead of a table")
	return cmd
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
			rows, err := nodeedit.Profiles(root)
			if err != nil {
				return err
			}
			if asJSON {
				if rows == nil {
					rows = []nodeedit.ProfileRow{}
				}
				return writeJSON(cmd.OutOrStdout(), rows)
			}
			nodeedit.WriteProfiles(cmd.OutOrStdout(), rows)
			return nil
		},
	}
	addTreeArg(cmd, &root)
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON instead of a table")
	return cmd
}
