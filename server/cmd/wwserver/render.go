package main

// render, nodes and check look at what would be served, without booting a
// node or starting the server.

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/server/artifact"
	"github.com/wwcluster/ww/server/bootscript"
	"github.com/wwcluster/ww/server/check"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/server/nodeedit"
)

func newRenderCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Print what a node will be served (iPXE script, overlay)",
		Long:  "render prints what wwserver would serve a node, from the files on disk, without booting it.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newRenderIPXECmd(), newRenderGRUBCmd(), newRenderOverlayCmd())
	return cmd
}

// renderUnknown handles the render operands that get no node's script: a
// MAC no node has (its unknown-node script is rendered, with a note on
// stderr) and a node without a MAC. done is false for a node to render.
func renderUnknown(cmd *cobra.Command, snap *config.Snapshot, n *config.Node, mac string,
	unknown func(io.Writer, *config.Snapshot, string) error) (done bool, err error) {
	if n == nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "# no node has MAC %s; it gets:\n", mac)
		return true, unknown(cmd.OutOrStdout(), snap, mac)
	}
	if mac == "" {
		return true, fmt.Errorf("node %s has no network device with a hwaddr, so it cannot PXE boot", n.Name)
	}
	return false, nil
}

func newRenderIPXECmd() *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "ipxe NODE|MAC",
		Short: "Print the iPXE script of a node (or the unknown-node script of a MAC)",
		Example: `  wwserver render ipxe n001 --root /var/lib/wwserver
  wwserver render ipxe 52-54-00-00-00-01`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			snap, err := config.Load(root)
			if err != nil {
				return err
			}
			n, mac, err := snap.Find(args[0])
			if err != nil {
				return err
			}
			t, err := bootscript.NewIPXE(root)
			if err != nil {
				return err
			}
			if done, err := renderUnknown(cmd, snap, n, mac, t.RenderUnknown); done {
				return err
			}
			digest, err := artifact.ImageDigest(cmd.Context(), cliBuilderOptions(root), snap, n)
			if err != nil {
				return err
			}
			script, _, err := t.Script(bootscript.Request{Snap: snap, Node: n, MAC: mac, ImageDigest: digest,
				ImageArch: artifact.ImageArchOf(cliBuilderOptions(root), n), Servers: []string{nodeapi.HostPort(snap.Server.Address, snap.Server.Port)}})
			if err == nil {
				_, err = cmd.OutOrStdout().Write(script)
			}
			return err
		},
	}
	addRootFlag(cmd, &root)
	return cmd
}

func newRenderGRUBCmd() *cobra.Command {
	var root, via string
	var bootstrap bool
	cmd := &cobra.Command{
		Use:   "grub NODE|MAC",
		Short: "Print the GRUB config of a node (bootloader = \"grub\"), or the unknown-node config of a MAC",
		Long: `grub prints what GRUB (behind shim, for Secure Boot) gets for NODE|MAC: TFTP grub/MAC
(--via tftp, Debian's signed GRUB) or GET /grub/MAC (--via http, a GRUB with http).
--bootstrap prints /grub/grub.cfg, the config every machine's GRUB reads first.`,
		Example: `  wwserver render grub n001 --root /var/lib/wwserver
  wwserver render grub --bootstrap`,
		Args: func(cmd *cobra.Command, args []string) error {
			if bootstrap {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			snap, err := config.Load(root)
			if err != nil {
				return err
			}
			g, err := bootscript.NewGRUB()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if bootstrap {
				return g.Bootstrap(out, []string{nodeapi.HostPort(snap.Server.Address, snap.Server.Port)}, via)
			}
			n, mac, err := snap.Find(args[0])
			if err != nil {
				return err
			}
			if done, err := renderUnknown(cmd, snap, n, mac, g.RenderUnknown); done {
				return err
			}
			if l := snap.Server.LoaderFor(n); l != config.LoaderGRUB {
				fmt.Fprintf(cmd.ErrOrStderr(), "# node %s boots with %s (bootloader); with GRUB it would get:\n", n.Name, l)
			}
			digest, err := artifact.ImageDigest(cmd.Context(), cliBuilderOptions(root), snap, n)
			if err != nil {
				return err
			}
			script, _, err := g.Script(bootscript.Request{Snap: snap, Node: n, MAC: mac, ImageDigest: digest, Via: via,
				ImageArch: artifact.ImageArchOf(cliBuilderOptions(root), n), Servers: []string{nodeapi.HostPort(snap.Server.Address, snap.Server.Port)}})
			if err == nil {
				_, err = out.Write(script)
			}
			return err
		},
	}
	addRootFlag(cmd, &root)
	cmd.Flags().StringVar(&via, "via", bootscript.ViaTFTP, `how GRUB fetches the files: "tftp" or "http"`)
	cmd.Flags().BoolVar(&bootstrap, "bootstrap", false, "print /grub/grub.cfg instead")
	return cmd
}

func newRenderOverlayCmd() *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "overlay NODE|MAC OVERLAY",
		Short: "List one overlay as a node gets it, with rendered templates",
		Long: `overlay lists every entry of OVERLAY (overlays/OVERLAY) as NODE gets it: mode,
owner, size and path, and the rendered content of each *.ww template.`,
		Example: "  wwserver render overlay n001 wwinit --root /var/lib/wwserver",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			snap, err := config.Load(root)
			if err != nil {
				return err
			}
			n, mac, err := snap.Find(args[0])
			if err != nil {
				return err
			}
			if n == nil {
				return fmt.Errorf("no node has MAC %s", mac)
			}
			b, err := newCLIBuilder(root)
			if err != nil {
				return err
			}
			return b.RenderOverlay(snap, n, args[1], cmd.OutOrStdout())
		},
	}
	addRootFlag(cmd, &root)
	return cmd
}

// newCLIBuilder is a builder for one-off commands (logs to stderr, warn+).
func newCLIBuilder(root string) (*artifact.Builder, error) {
	return artifact.New(cliBuilderOptions(root))
}

func cliBuilderOptions(root string) artifact.Options {
	log, _ := (&logFlags{format: "text", level: "warn"}).logger(os.Stderr)
	return artifact.Options{Root: root, Log: log}
}

func newNodesCmd() *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "nodes [DIR]",
		Short: "List the nodes as resolved from nodes.toml (profiles merged)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			snap, err := config.Load(root)
			if err != nil {
				return err
			}
			nodeedit.WriteNodes(cmd.OutOrStdout(), snap.Nodes.List)
			return nil
		},
	}
	addTreeArg(cmd, &root)
	return cmd
}

func newCheckCmd() *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "check [DIR]",
		Short: "Validate the served tree: config files, and what they refer to",
		Long: `check validates wwserver.toml, nodes.toml and nodes.d/*.toml and reports every
error in one run, one line each (file:line: key: reason). It also checks that
every image a node names exists and has a Linux kernel (the placeholder image
"wwserver init" writes without --image-from has none), that every overlay and
iPXE template a node names exists, and that every boot file wwserver.toml
names (dhcp.bios_file, efi_file, arm64_file, http_boot_file, in tftp.dir) is a
readable regular file. It prints "ok", or exits 1 when anything is wrong.

It warns (without failing) when images/ is reachable by users other than root
(image trees hold setuid-root programs; serve makes it root-only), and about
temporary trees killed imports left (serve and the next import remove them).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			problems := checkTree(root)
			for _, p := range problems {
				fmt.Fprintln(cmd.ErrOrStderr(), p)
			}
			for _, w := range check.Images(root) {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			if len(problems) > 0 {
				return errReported
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return nil
		},
	}
	addTreeArg(cmd, &root)
	return cmd
}

// checkTree returns every problem check finds in the tree at root.
func checkTree(root string) []string {
	log, _ := (&logFlags{format: "text", level: "warn"}).logger(os.Stderr)
	return check.Tree(root, log)
}
