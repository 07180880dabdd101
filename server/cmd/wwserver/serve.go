package main

import (
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/server/daemon"
)

type serveOptions struct {
	daemon.Options
	logs logFlags
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve [DIR]",
		Short: "Serve nodes: HTTP provisioning, plus DHCP and TFTP when enabled",
		Long: `serve provisions nodes from the served tree until SIGTERM or SIGINT.

It reloads wwserver.toml and nodes.toml when they change (and on SIGHUP); a
bad file is logged and the last good configuration stays in use (/healthz
then answers 503 "degraded"). Images and overlays are built on demand and
cached under state/. Node status is kept in state/status.json.

DHCP and TFTP start when enabled in wwserver.toml; enabling or disabling
them, or changing listen addresses, needs a restart.

Under systemd (Type=notify) it reports READY once listening. GOGC defaults
to 400 here (the environment's GOGC wins).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := o.logs.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return daemon.Run(ctx, o.Options, log)
		},
	}
	addTreeArg(cmd, &o.Root)
	cmd.Flags().IntVar(&o.MaxConns, "max-connections", 8192,
		"HTTP connections held at once; at the limit the longest-idle one is closed for a new one, and only when all are busy do new ones wait")
	cmd.Flags().IntVar(&o.PerClient, "max-connections-per-client", 0,
		"HTTP connections one source address may hold (0: a quarter of --max-connections; -1: no cap)")
	cmd.Flags().StringVar(&o.Listen, "listen", "", "HTTP listen address, overriding wwserver.toml's listen (nodes are still told its port)")
	o.logs.add(cmd)
	return cmd
}
