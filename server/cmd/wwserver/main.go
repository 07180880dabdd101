// Command wwserver provisions cluster nodes: it serves iPXE scripts,
// kernels, images and overlays over HTTP (and optionally DHCP and TFTP),
// from a served tree of plain files (see DESIGN.md).
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// DefaultRoot is the served tree when --root is not given.
const DefaultRoot = "/var/lib/wwserver"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the CLI and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.Execute(); err != nil {
		var code exitCode
		if errors.As(err, &code) {
			if !strings.Contains(strings.Join(args, " "), chrootHelperName) {
				fmt.Fprintln(stderr, "wwserver:", err)
			}
			return int(code)
		}
		if !errors.Is(err, errReported) {
			fmt.Fprintln(stderr, "wwserver:", err)
		}
		return 1
	}
	return 0
}

// errReported is returned by commands that already printed their errors
// and only need a failing exit code.
var errReported = errors.New("errors reported")

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "wwserver",
		Short: "Provision cluster nodes over PXE, iPXE and HTTP",
		Long: `wwserver boots cluster nodes from a served tree of plain files:

  wwserver.toml   server settings          nodes.toml   nodes and profiles
  images/NAME/    node images (rootfs/)    overlays/    overlay sources
  ipxe/           iPXE template overrides  state/       generated (deletable)

Start with "wwserver init DIR", then "wwserver serve --root DIR".`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newInitCmd(),
		newServeCmd(),
		newStatusCmd(),
		newNodesCmd(),
		newNodeCmd(),
		newProfileCmd(),
		newImageCmd(),
		newRenderCmd(),
		newBuildCmd(),
		newCheckCmd(),
	)
	return root
}

// addRootFlag adds --root to cmd.
func addRootFlag(cmd *cobra.Command, root *string) {
	cmd.Flags().StringVar(root, "root", DefaultRoot, "served tree (wwserver.toml, nodes.toml, images/, overlays/)")
}

// logFlags are --log-format and --log-level.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&l.format, "log-format", "text", `log format: "text" or "json"`)
	cmd.Flags().StringVar(&l.level, "log-level", "info", `log level: "debug", "info", "warn" or "error"`)
}

// logger builds the slog logger the flags ask for, writing to w.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(l.format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", l.format)
}
