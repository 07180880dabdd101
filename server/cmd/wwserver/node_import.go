package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

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
			list, err := hostlist.Expand(names)
			if err != nil {
				return err
			}
			f.Given = cmd.Flags().Changed
			rows, err := nodeedit.New(root).Import(args[0], cmd.InOrStdin(), list, &f.Fields, dryRun)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LINE\tNAME\tMAC\tIPADDR")
			for _, r := range rows {
				ip := r.IPAddr
				if ip == "" {
					ip = "-"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.Line, r.Name, r.MAC, ip)
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
