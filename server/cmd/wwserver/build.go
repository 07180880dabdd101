package main

import (
	"fmt"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/server/artifact"
	"github.com/wwcluster/ww/server/config"
)

func newBuildCmd() *cobra.Command {
	var (
		root    string
		workers int
		logs    logFlags
	)
	cmd := &cobra.Command{
		Use:   "build [DIR]",
		Short: "Prebuild every node's image and overlays into the cache",
		Long: `build builds what every node will be served (image, system and runtime
overlays; the kernel is checked) into state/, so the first boots after a change
do not wait for the big builds. Images and the shared overlay parts are
content-addressed and durable, so a running or restarted server reuses them;
the small per-node parts are rendered to report template errors for every node
up front, but not stored: the server builds them on a node's first request.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			snap, err := config.Load(root)
			if err != nil {
				return err
			}
			b, err := artifact.New(artifact.Options{Root: root, Log: log})
			if err != nil {
				return err
			}
			defer b.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			st, err := b.BuildAll(ctx, snap, workers)
			fmt.Fprintln(cmd.OutOrStdout(), st)
			if err != nil {
				return fmt.Errorf("build: %w", err)
			}
			return nil
		},
	}
	addTreeArg(cmd, &root)
	cmd.Flags().IntVar(&workers, "workers", 0, "nodes built in parallel (0: number of CPUs)")
	logs.add(cmd)
	return cmd
}
