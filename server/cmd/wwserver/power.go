package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeedit"
	"github.com/wwcluster/ww/server/power"
)

// newPowerCmd is `wwserver power on|off|cycle|reset|status NODES`.
func newPowerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "power on|off|cycle|reset|status NODES",
		Short: "Switch nodes on or off, or read their power state, through their BMCs (IPMI or Redfish)",
		Long: `power asks each node's BMC ([nodes.NAME.bmc] in nodes.toml: address, username,
password or password_file, interface = "lanplus" (IPMI 2.0, the default) or
"redfish") to switch the node on, off (hard), cycle it (off, then on), reset it
(hard reset, the power stays on), or report its power state.

NODES is a hostlist ("n[001-100],gpu01"). Up to --parallel BMCs are asked at
once, each within --timeout. One line per node, in name order; the exit code
is 1 when any node failed (including nodes without BMC settings).`,
		Example: `  wwserver power status 'n[001-100]'
  wwserver power cycle n001 --timeout 5s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	for _, a := range power.Actions() {
		cmd.AddCommand(newPowerActionCmd(a))
	}
	return cmd
}

func newPowerActionCmd(a power.Action) *cobra.Command {
	var (
		root     string
		parallel int
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   string(a) + " NODES",
		Short: fmt.Sprintf("Power %s NODES (a hostlist) through their BMCs", a),
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if parallel < 1 || timeout <= 0 {
				return fmt.Errorf("--parallel must be at least 1 and --timeout positive")
			}
			ns, list, err := loadSelected(root, args[0])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmdContext(cmd), os.Interrupt, syscall.SIGTERM)
			defer stop()
			results := power.Run(ctx, power.Jobs(ns, list, root), a, power.Options{Parallel: parallel, Timeout: timeout})
			if writePowerResults(cmd.OutOrStdout(), a, results) > 0 {
				return errReported
			}
			return nil
		},
	}
	addRootFlag(cmd, &root)
	cmd.Flags().IntVar(&parallel, "parallel", power.DefaultParallel, "BMCs asked at once")
	cmd.Flags().DurationVar(&timeout, "timeout", power.DefaultTimeout, "time per node (session and command)")
	return cmd
}

// writePowerResults prints one line per node and returns how many failed.
func writePowerResults(w io.Writer, a power.Action, results []power.Result) (failed int) {
	for _, r := range results {
		switch {
		case r.Err != nil:
			failed++
			fmt.Fprintf(w, "%s: error: %v\n", r.Node, r.Err)
		case a == power.Status:
			fmt.Fprintf(w, "%s: %s\n", r.Node, r.State)
		default:
			fmt.Fprintf(w, "%s: %s ok\n", r.Node, a)
		}
	}
	if failed > 0 {
		fmt.Fprintf(w, "%d of %d nodes failed\n", failed, len(results))
	}
	return failed
}

// loadSelected loads the tree's nodes and picks those of a hostlist.
func loadSelected(root, pattern string) (*config.Nodes, []*config.Node, error) {
	ns, err := config.LoadNodesTree(root)
	if err != nil {
		return nil, nil, err
	}
	list, err := nodeedit.SelectNodes(ns, pattern)
	if err != nil {
		return nil, nil, err
	}
	return ns, list, nil
}

func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// newConsoleCmd is `wwserver console NODE`.
func newConsoleCmd() *cobra.Command {
	var (
		root    string
		force   bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "console NODE",
		Short: "Attach to a node's serial console through its BMC (IPMI Serial-over-LAN)",
		Long: `console opens an IPMI 2.0 session with the node's BMC ([nodes.NAME.bmc],
interface "lanplus") and activates Serial-over-LAN: what the node writes to its
serial port is shown, what you type is sent to it. Quit with ` + power.EscapeHelp + `
(Ctrl-C is sent to the node when the input is a terminal). A BMC allows one SOL
session at a time: --force takes over one left active.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, list, err := loadSelected(root, args[0])
			if err != nil {
				return err
			}
			if len(list) != 1 {
				return fmt.Errorf("console takes one node, %q names %d", args[0], len(list))
			}
			t, err := power.TargetFor(ns, list[0], root)
			if err != nil {
				return fmt.Errorf("%s: %w", list[0].Name, err)
			}
			ctx, stop := signal.NotifyContext(cmdContext(cmd), syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			return runConsole(ctx, cmd, t, power.ConsoleOptions{Force: force, ConnectTimeout: timeout})
		},
	}
	addRootFlag(cmd, &root)
	cmd.Flags().BoolVar(&force, "force", false, "end a SOL session someone else left active first")
	cmd.Flags().DurationVar(&timeout, "timeout", power.DefaultTimeout, "time to connect and activate SOL")
	return cmd
}

// runConsole runs the console on the command's input and output, the
// terminal (if the input is one) in raw mode meanwhile.
func runConsole(ctx context.Context, cmd *cobra.Command, t power.Target, opts power.ConsoleOptions) error {
	in, stderr := cmd.InOrStdin(), cmd.ErrOrStderr()
	fd := -1
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd = int(f.Fd())
	} else {
		// Not a terminal: Ctrl-C arrives as a signal, and ends the console.
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt)
		defer stop()
	}
	restore := func() {}
	opts.Activated = func() {
		fmt.Fprintf(stderr, "[console of %s via %s (IPMI SOL); quit with %s]\r\n", t.Node, t.Address, power.EscapeHelp)
		if fd < 0 {
			return
		}
		if old, err := term.MakeRaw(fd); err == nil {
			restore = func() { _ = term.Restore(fd, old) }
		}
	}
	err := power.Console(ctx, t, power.NewEscapeReader(in), cmd.OutOrStdout(), opts)
	restore()
	fmt.Fprintf(stderr, "\r\n[console of %s closed]\n", t.Node)
	return err
}

// powerColumn is status --power's query (nil without --power): the power
// state of the named nodes of root's tree, "error" where the BMC failed
// (the reason to stderr) and "--" (absent) where a node has no BMC.
func powerColumn(on bool, root string, timeout time.Duration, stderr io.Writer) func(context.Context, []string) map[string]string {
	if !on {
		return nil
	}
	return func(ctx context.Context, names []string) map[string]string {
		out := map[string]string{}
		ns, err := config.LoadNodesTree(root)
		if err != nil {
			fmt.Fprintf(stderr, "power: %v\n", err)
			return out
		}
		var list []*config.Node
		for _, name := range names {
			if n := ns.ByName[name]; n != nil && n.BMC != nil && n.BMC.Address != "" {
				list = append(list, n)
			}
		}
		for _, r := range power.Run(ctx, power.Jobs(ns, list, root), power.Status, power.Options{Timeout: timeout}) {
			if r.Err != nil {
				out[r.Node] = "error"
				fmt.Fprintf(stderr, "power %s: %v\n", r.Node, r.Err)
				continue
			}
			out[r.Node] = string(r.State)
		}
		return out
	}
}

// addBMCFlags adds the --bmc-* flags of node/profile add and set.
func addBMCFlags(cmd *cobra.Command, b *nodeedit.BMCFields) {
	fl := cmd.Flags()
	fl.StringVar(&b.Address, "bmc-address", "", "BMC host[:port]; an IPv4 address counts up across the names, as --ipaddr")
	fl.StringVar(&b.Username, "bmc-username", "", "BMC user name")
	fl.StringVar(&b.Password, "bmc-password", "", "BMC password (kept in nodes.d/, never in overlays; --bmc-password-file keeps it out of the tree)")
	fl.StringVar(&b.PasswordFile, "bmc-password-file", "", "file whose first line is the BMC password (relative: under --root)")
	fl.StringVar(&b.Interface, "bmc-interface", "", `"lanplus" (IPMI 2.0, default) or "redfish"`)
}
