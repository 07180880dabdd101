package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/configupgrade"
)

func newUpgradeCmd() *cobra.Command {
	var root string
	var check bool
	cmd := &cobra.Command{
		Use:   "upgrade [--check] [DIR]",
		Short: "Rewrite an older wwserver.toml / nodes.toml to the current schema, keeping comments",
		Long: fmt.Sprintf(`upgrade rewrites wwserver.toml and nodes.toml written in an older schema (the
top-level key "schema"; a file without it is schema %d) to schema %d, by editing
their lines: comments, order and layout stay. Each rewrite is checked to mean
exactly what the old file meant; the old file is kept as FILE.old. nodes.d/
files are written by wwserver itself and carry no schema.

--check prints what would change and exits non-zero when something would.
A file in a schema newer than this wwserver's is an error naming file, line
and key. Schema 1 → 2: add "schema = 2"; dhcp.answer_router_solicitations
true/false (booleans) become "true"/"false".`, config.SchemaLegacy, config.Schema),
		RunE: func(cmd *cobra.Command, _ []string) error {
			files, err := configupgrade.Plan(root)
			if err != nil {
				return err
			}
			out, changes := cmd.OutOrStdout(), 0
			for _, f := range files {
				fmt.Fprint(out, f.Summary())
				changes += len(f.Changes)
			}
			if changes == 0 {
				return nil
			}
			if check {
				fmt.Fprintf(out, "%d change(s) needed: run wwserver upgrade %s\n", changes, root)
				return errReported
			}
			if err := configupgrade.Apply(files); err != nil {
				return err
			}
			for _, f := range files {
				if len(f.Changes) > 0 {
					fmt.Fprintf(out, "upgraded %s to schema %d (was %d; old copy: %s%s)\n", f.Path, config.Schema, f.Schema, f.Path, configupgrade.OldSuffix)
				}
			}
			return nil
		},
	}
	addTreeArg(cmd, &root)
	cmd.Flags().BoolVar(&check, "check", false, "print what would change; exit non-zero if something would")
	return cmd
}
