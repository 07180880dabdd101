package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/hostlist"
	"github.com/wwcluster/ww/server/nodeedit"
)

func newNodeImportCmd() *cobra.Command {
	var (
		root, names string
		dryRun      bool
		f           entryFlags
	)
	cmd := &cobra.Command{
		Use:   "import FILE --names 'c[001-100]'",
		Short: "Add nodes from a vendor MAC list in rack order (one MAC per line, or CSV with a MAC column)",
		Long: `import pairs the MACs of FILE ("-" for stdin), in file order, with the names of --names,
in hostlist order, and adds one node each: the first MAC becomes the first name. --ipaddr
counts up the same way. --dry-run prints the table and writes nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if names == "" {
				return errors.New("--names is required (e.g. --names 'c[001-100]')")
			}
			if cmd.Flags().Changed("hwaddr") {
				return errors.New("--hwaddr: the MACs come from FILE")
			}
			list, err := expandNames(names)
			if err != nil {
				return err
			}
			var in io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				fh, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer fh.Close()
				in = fh
			}
			macs, err := nodeedit.ParseMACList(args[0], in)
			if err != nil {
				return err
			}
			if len(macs) != len(list) {
				return fmt.Errorf("%s has %d MACs but --names gives %d names: they must match one to one", args[0], len(macs), len(list))
			}
			entries := make([]*config.Entry, len(list))
			for i := range list {
				e := &config.Entry{}
				if err := f.apply(cmd, e, list[i], i); err != nil {
					return err
				}
				if e.Network == nil {
					e.Network = map[string]*config.NetDevEntry{}
				}
				if e.Network[f.NetDev] == nil {
					e.Network[f.NetDev] = &config.NetDevEntry{}
				}
				mac := macs[i].MAC
				e.Network[f.NetDev].HWAddr = &mac
				entries[i] = e
			}
			edit := nodeedit.New(root).Edit
			if dryRun {
				edit = nodeedit.New(root).DryRun
			}
			_, err = edit(func(t *nodeedit.Tree) error {
				for i, name := range list {
					if !cmd.Flags().Changed("profile") && t.File(nodeedit.Profile, "default") != "" {
						entries[i].Profiles = []string{"default"}
					}
					if err := t.Add(nodeedit.Node, name, entries[i]); err != nil {
						return fmt.Errorf("%s:%d: %w", args[0], macs[i].Line, err)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LINE\tNAME\tMAC\tIPADDR")
			for i, name := range list {
				ip := "-"
				if d := entries[i].Network[f.NetDev]; d.IPAddr != nil {
					ip = *d.IPAddr
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", macs[i].Line, name, macs[i].MAC, ip)
			}
			_ = tw.Flush()
			if dryRun {
				fmt.Fprintf(cmd.OutOrStdout(), "dry run: %d node(s) would be added; nothing written\n", len(list))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d node(s): %s\n", len(list), hostlist.Compress(list))
			return nil
		},
	}
	addRootFlag(cmd, &root)
	cmd.Flags().StringVar(&names, "names", "", "node names in rack order (hostlist), one per MAC")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the table, write nothing")
	f.add(cmd, nodeedit.Node)
	return cmd
}
