package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/server/scaffold"
)

// The image init creates; nodes.toml's default profile uses it.
const initImage = scaffold.Image

func newInitCmd() *cobra.Command {
	var o scaffold.Options
	cmd := &cobra.Command{
		Use:   "init DIR | --root DIR",
		Short: "Write a complete, commented example served tree to DIR",
		Long: `init writes a working served tree to DIR:

  wwserver.toml            every setting, commented (DHCP and TFTP present, disabled)
  nodes.toml               profile "default" and nodes n001, n002
  overlays/wwinit/         system overlay: /init (wwclient), wwclient.toml, network
  overlays/generic/        runtime overlay: hosts, accounts
  overlays/wwinit/usr/sbin/wwclient   copied from --wwclient
  images/default/rootfs/   copied from --image-from (like cp -a), else a placeholder
  ipxe/                    how to override the iPXE script

DIR must be empty or missing unless --force (which overwrites the files init
writes and leaves others alone).`,
		Example: `  wwserver init /var/lib/wwserver --image-from /srv/images/debian12 --address 10.0.2.1
  wwserver check /var/lib/wwserver
  wwserver serve /var/lib/wwserver`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !cmd.Flags().Changed("root") {
				return errors.New("init needs the directory to write: wwserver init DIR (or --root DIR)")
			}
			if err := takeTreeArg(cmd, &o.Dir, args); err != nil {
				return err
			}
			return runInit(o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.Dir, "root", "", "directory to write (the same as the DIR operand)")
	cmd.Flags().StringVar(&o.WWClient, "wwclient", "", "wwclient binary to install as /usr/sbin/wwclient and /init (default: wwclient next to this wwserver)")
	cmd.Flags().StringVar(&o.ImageFrom, "image-from", "", "root filesystem to copy to images/default/rootfs (modes, owners, symlinks kept, like cp -a)")
	cmd.Flags().StringVar(&o.Address, "address", "", "IPv4 address nodes use to reach this server (default: this host's first non-loopback IPv4)")
	cmd.Flags().StringVar(&o.Listen, "listen", ":9873", "HTTP listen address written to wwserver.toml")
	cmd.Flags().BoolVar(&o.Force, "force", false, "write into a non-empty DIR")
	return cmd
}

func runInit(o scaffold.Options, out io.Writer) error {
	r, err := scaffold.Write(o)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote a served tree to %s\n", r.Dir)
	fmt.Fprintf(out, "  nodes reach this server at %s (edit wwserver.toml to change)\n", r.URL)
	fmt.Fprintf(out, "  wwclient: %s\n", r.WWClient)
	for _, n := range r.Notes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
	fmt.Fprintf(out, "next: edit nodes.toml (MACs, addresses), then\n  wwserver check %s\n  wwserver serve %s\n", r.Dir, r.Dir)
	return nil
}
