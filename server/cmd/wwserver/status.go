package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/server/hostlist"
	"github.com/wwcluster/ww/server/status"
)

// newStatusCmd is `wwserver status [NODES…]`: a thin wrapper around
// status.Show, which holds the logic (and its tests).
func newStatusCmd() *cobra.Command {
	var (
		root, server, sortBy string
		asJSON, watch, pwr   bool
		interval, timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status [NODES...]",
		Short: "Show where each node is in its boot, from the running server",
		Long: `Ask the running wwserver (GET /status) where each node is in its boot:
the last stage it reached, the file it was sent and how many seconds ago it
was last seen. Nodes never seen show "--". MAC addresses that asked but
belong to no node are listed after the nodes, under "UNKNOWN MAC".

NODES are node names or hostlist patterns such as c[001-010],gpu01,
n[1-3,7] or r[1-2]n[01-02]; an unknown MAC can be named too.

The server is --server, or the one this host runs for --root (its
wwserver.toml gives the port). On a terminal, with NO_COLOR unset, nodes not
seen for over two update intervals are shown in red.

--sort lastseen puts the longest-unseen nodes first (never seen, then the
oldest last contact).`,
		Example: `  wwserver status
  wwserver status 'c[001-010],gpu01' --sort lastseen
  wwserver status --watch --interval 2s
  wwserver status --json --server http://10.0.2.1:9873`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := status.CheckSort(sortBy); err != nil {
				return fmt.Errorf("--sort: %w", err)
			}
			if watch && interval <= 0 {
				return fmt.Errorf("--interval must be positive, got %s", interval)
			}
			names, err := statusNames(args)
			if err != nil {
				return err
			}
			if err := findServer(&server, root); err != nil {
				return err
			}
			tty := status.IsTerminal(os.Stdout) && cmd.OutOrStdout() == os.Stdout
			_, noColor := os.LookupEnv("NO_COLOR")
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return status.Show(ctx, cmd.OutOrStdout(), status.ShowOptions{
				Server:   server,
				Names:    names,
				JSON:     asJSON,
				Render:   status.RenderOptions{Sort: sortBy, Color: tty && !noColor},
				Watch:    watch,
				Interval: interval,
				Clear:    tty,
				Timeout:  timeout,
				Stderr:   cmd.ErrOrStderr(),
				Power:    powerColumn(pwr, root, timeout, cmd.ErrOrStderr()),
			})
		},
	}
	cmd.AddCommand(newStatusPruneCmd())
	addRootFlag(cmd, &root)
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "server URL, e.g. http://10.0.2.1:9873 (default: this host's server for --root)")
	f.BoolVar(&asJSON, "json", false, "print the JSON report instead of the table")
	f.StringVar(&sortBy, "sort", status.SortName, `order: "name" or "lastseen" (longest unseen first)`)
	f.BoolVarP(&watch, "watch", "w", false, "refresh every --interval until interrupted (Ctrl-C)")
	f.DurationVar(&interval, "interval", 2*time.Second, "refresh interval for --watch")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the server's answer")
	f.BoolVar(&pwr, "power", false, "add a POWER column: each node's BMC asked (nodes.toml of --root), up to 32 at once, within --timeout")
	cmd.MarkFlagsMutuallyExclusive("power", "json") // power status NODES gives the states alone
	return cmd
}

// newStatusPruneCmd is `wwserver status prune NODES|--removed`.
func newStatusPruneCmd() *cobra.Command {
	var (
		root, server string
		removed      bool
		timeout      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "prune [NODES...] [--removed]",
		Short: "Drop the status history of nodes (or unknown MACs)",
		Long: `Editing nodes.toml never deletes status: a node removed from it is hidden
from "wwserver status" and keeps its stage and last seen, so a node put back
by mistake loses nothing. Its status goes after ` + fmt.Sprintf("%.0f days", status.RemovedMaxAge.Hours()/24) + ` unseen, or now
with this command. Unknown MACs go after ` + fmt.Sprintf("%.0f hours", status.UnknownMaxAge.Hours()) + ` unseen.

NODES are names, hostlist patterns or unknown MACs; --removed drops every
node no longer in nodes.toml. The running server does it (from this host only).`,
		Example: `  wwserver status prune n017
  wwserver status prune --removed`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !removed {
				return fmt.Errorf("name nodes to prune, or --removed")
			}
			names, err := hostlist.ExpandAll(args)
			if err != nil {
				return err
			}
			if err := findServer(&server, root); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			pruned, err := status.Prune(ctx, nil, server, status.PruneRequest{Nodes: names, Removed: removed})
			if err != nil {
				return err
			}
			for _, n := range pruned {
				fmt.Fprintln(cmd.OutOrStdout(), "pruned", n)
			}
			if len(pruned) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to prune")
			}
			return nil
		},
	}
	addRootFlag(cmd, &root)
	cmd.Flags().StringVar(&server, "server", "", "server URL (default: this host's server for --root)")
	cmd.Flags().BoolVar(&removed, "removed", false, "prune every node no longer in nodes.toml")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the server's answer")
	return cmd
}

// findServer sets *server, when not given, to this host's server for root.
func findServer(server *string, root string) (err error) {
	if *server == "" {
		if *server, err = status.DefaultServerURL(root); err != nil {
			return fmt.Errorf("cannot find the server (use --server URL or --root DIR; make lab prints the command for its server): %w", err)
		}
	}
	return nil
}

// statusNames expands the NODES operands (nil for none); a served tree among
// them is a misplaced --root.
func statusNames(args []string) ([]string, error) {
	for _, a := range args {
		if isServedTree(a) {
			return nil, fmt.Errorf("%s is a served tree, not a node: pass it as --root %s", a, a)
		}
	}
	if len(args) == 0 {
		return nil, nil
	}
	return hostlist.ExpandAll(args)
}
