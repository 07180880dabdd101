package main

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/hostkeys"
	"github.com/wwcluster/ww/server/hostlist"
)

// newSSHCmd is `wwserver ssh`: the nodes' host keys and the cluster's root
// key, kept under hostkeys/ (server/hostkeys).
func newSSHCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh",
		Short: "Nodes' SSH host keys, the cluster's known_hosts and root key",
		Long: `Each node's SSH host keys are made once on the server and kept under
hostkeys/nodes/NAME (0600); the runtime overlay delivers them, so a node
presents the same key after every boot. A node's ed25519 and ecdsa keys are
made when its runtime overlay is first rendered; "ssh keys" makes every
node's keys ahead of time, RSA included, prunes the keys of nodes no longer in
the config, and writes hostkeys/ssh_known_hosts for the head node. Log in as
root with the cluster key:

  ssh -i ROOT/hostkeys/id_ed25519 -o UserKnownHostsFile=ROOT/hostkeys/ssh_known_hosts \
      -o StrictHostKeyChecking=yes root@n001`,
	}
	cmd.AddCommand(newSSHKeysCmd(), newSSHKnownHostsCmd(), newSSHPruneCmd())
	return cmd
}

func newSSHKeysCmd() *cobra.Command {
	var (
		root    string
		workers int
	)
	cmd := &cobra.Command{
		Use:   "keys [NODES]",
		Short: "Make the missing host keys (ed25519, ecdsa, rsa), prune deleted nodes' keys, write ssh_known_hosts",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			snap, err := config.Load(root)
			if err != nil {
				return err
			}
			names, err := selectNames(snap.Nodes, args)
			if err != nil {
				return err
			}
			s := hostkeys.New(root)
			made, err := s.EnsureAll(names, hostkeys.All, workers)
			if err != nil {
				return err
			}
			gone, err := s.Prune(allNames(snap.Nodes))
			if err != nil {
				return err
			}
			if _, err := s.ClusterKey(); err != nil {
				return err
			}
			kh, err := s.WriteKnownHosts(snap.Nodes.Public)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%d nodes: %d got new keys; %d deleted nodes' keys pruned%s\n", len(names), made, len(gone), prunedList(gone))
			fmt.Fprintf(w, "known hosts: %s\ncluster root key: %s (in every node's authorized_keys)\n", kh, s.Path("id_ed25519"))
			return nil
		},
	}
	addRootFlag(cmd, &root)
	cmd.Flags().IntVar(&workers, "workers", runtime.NumCPU(), "nodes whose keys are made in parallel (RSA takes seconds)")
	return cmd
}

func newSSHKnownHostsCmd() *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "known-hosts",
		Short: "Print ssh_known_hosts of every node with host keys (names and addresses)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			snap, err := config.Load(root)
			if err != nil {
				return err
			}
			kh, err := hostkeys.New(root).KnownHosts(snap.Nodes.Public)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), kh)
			return err
		},
	}
	addRootFlag(cmd, &root)
	return cmd
}

func newSSHPruneCmd() *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove the host keys of nodes that are no longer in the config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			snap, err := config.Load(root)
			if err != nil {
				return err
			}
			gone, err := hostkeys.New(root).Prune(allNames(snap.Nodes))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d deleted nodes' keys pruned%s\n", len(gone), prunedList(gone))
			return nil
		},
	}
	addRootFlag(cmd, &root)
	return cmd
}

func allNames(ns *config.Nodes) []string {
	out := make([]string, 0, len(ns.List))
	for _, n := range ns.List {
		out = append(out, n.Name)
	}
	return out
}

// selectNames is every node, or those of a hostlist (each must exist).
func selectNames(ns *config.Nodes, args []string) ([]string, error) {
	if len(args) == 0 {
		return allNames(ns), nil
	}
	names, err := hostlist.Expand(args[0])
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if ns.ByName[n] == nil {
			return nil, fmt.Errorf("no node %q", n)
		}
	}
	return names, nil
}

func prunedList(gone []string) string {
	if len(gone) == 0 {
		return ""
	}
	return " (" + strings.Join(gone, ", ") + ")"
}
