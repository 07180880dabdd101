// Command wwserver provisions cluster nodes: it serves iPXE scripts,
// kernels, images and overlays over HTTP (and optionally DHCP and TFTP),
// from a served tree of plain files (see DESIGN.md).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/internal/buildinfo"
	"github.com/wwcluster/ww/server/config"
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

Start with "wwserver init DIR", then "wwserver check DIR" and "wwserver serve DIR".

Every command that reads the served tree takes it as --root DIR (default
/var/lib/wwserver); those without other operands (init, check, serve, build,
nodes, image list, profile list) also take it as DIR.`,
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
		newTLSCmd(),
		newUpgradeCmd(),
		newPowerCmd(),
		newConsoleCmd(),
		newSSHCmd(), // ssh.go
		newGenDocsCmd(),
	)
	root.Version = buildinfo.Version(buildVersion)
	return root
}

// addRootFlag adds --root to cmd. A command with other operands takes the
// tree only as --root; when its operands look wrong and one of them is a
// served tree, the error says to pass it as --root.
func addRootFlag(cmd *cobra.Command, root *string) {
	cmd.Flags().StringVar(root, "root", DefaultRoot, "served tree (wwserver.toml, nodes.toml, images/, overlays/)")
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			err := check(c, args)
			if err == nil {
				return nil
			}
			for _, a := range args {
				if isServedTree(a) {
					return fmt.Errorf("%w (%s is a served tree: pass it as --root %s)", err, a, a)
				}
			}
			return err
		}
	}
}

// addTreeArg makes the served tree the one optional operand of cmd, which
// has no other: "cmd DIR" and "cmd --root DIR" are the same (both at once
// must agree). Call it after setting cmd.PreRunE, if any.
func addTreeArg(cmd *cobra.Command, root *string) {
	cmd.Flags().StringVar(root, "root", DefaultRoot, "served tree (wwserver.toml, nodes.toml, images/, overlays/); also the DIR operand")
	cmd.Args = cobra.MaximumNArgs(1)
	pre := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if err := takeTreeArg(c, root, args); err != nil {
			return err
		}
		if pre != nil {
			return pre(c, args)
		}
		return nil
	}
}

// takeTreeArg sets *root from the DIR operand, if given.
func takeTreeArg(c *cobra.Command, root *string, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if c.Flags().Changed("root") && filepath.Clean(*root) != filepath.Clean(args[0]) {
		return fmt.Errorf("two served trees given: %s and --root %s", args[0], *root)
	}
	*root = args[0]
	return nil
}

// isServedTree reports whether dir holds a wwserver.toml.
func isServedTree(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, config.ServerFile))
	return err == nil && fi.Mode().IsRegular()
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

// writeJSON prints v as indented JSON, the --json output of list commands.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
