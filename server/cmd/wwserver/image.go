package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/image"
	"github.com/wwcluster/ww/server/status"
)

func newImageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Import, list, delete node images and run commands in them",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newImageImportCmd(), newImageListCmd(), newImageDeleteCmd(), newImageExecCmd(), newImageShellCmd(),
		newImageChrootHelperCmd())
	return cmd
}

func newImageImportCmd() *cobra.Command {
	var (
		root, platform   string
		maxSize, reserve string
		quiet            bool
	)
	cmd := &cobra.Command{
		Use:   "import SOURCE NAME",
		Short: "Import a container image as images/NAME/rootfs",
		Long: `import flattens a container image into images/NAME/rootfs. SOURCE is one of:

  DIR                         an OCI image layout (index.json, blobs/)
  FILE.tar                    an OCI archive, or a docker save / podman save archive
  FILE.tar[.gz|.zst]          a plain root filesystem tar
  docker://REGISTRY/REPO:TAG  an image in a registry (credentials from ~/.docker/config.json)

Whiteouts are honoured; owners, modes, xattrs (security.selinux, capabilities), hard
links, device nodes and symlinks are kept; entries that would land outside the image
(.., absolute paths, through symlinks) are refused. The new tree is built next to the
old one and swapped in atomically: a failed or interrupted import leaves the old image
serving, and the next request serves the new one.

Every layer is read to its end and checked against its digest and diff_id (and
manifests and configs against theirs): a mismatch refuses the import, naming the
layer. Archives are read where they are, not unpacked: the new tree is all that is
written. --max-size refuses an image that writes more file data; the import is
refused before the tree's file system would have less free than --reserve (default:
5% of the file system, at least 1 GiB, at most half of it; 0: none), which keeps
room for node status, leases and the images serve builds under state/. SIZE is
bytes or e.g. 500MB, 10GiB.

An image with no kernel (boot/vmlinuz-*) or no /sbin/init is imported with a warning:
install them with image exec.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o := image.Options{Tree: root, Source: args[0], Name: args[1], Platform: platform}
			if err := o.SetLimits(maxSize, reserve); err != nil {
				return err
			}
			if !quiet {
				o.Progress = cmd.ErrOrStderr()
				f, ok := cmd.ErrOrStderr().(*os.File)
				o.Terminal = ok && status.IsTerminal(f)
			}
			m, err := image.Import(ctx, o)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), m.Summary(args[0], args[1]))
			for _, w := range m.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "wwserver: warning:", w)
			}
			return nil
		},
	}
	addRootFlag(cmd, &root)
	cmd.Flags().StringVar(&platform, "platform", "", "OS/ARCH[/VARIANT] to pick from a multi-platform image (default linux/this machine's)")
	cmd.Flags().StringVar(&maxSize, "max-size", "", "refuse an image that writes more file data than SIZE (default: no limit)")
	cmd.Flags().StringVar(&reserve, "reserve", "", "free space to leave on the tree's file system (default 5% of it, at least 1GiB, at most half; 0: none)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress")
	return cmd
}

// treeNodes loads the nodes for usage checks; a broken nodes config is an
// error (deleting an image while unsure who uses it would be a guess).
func treeNodes(root string) (*config.Nodes, error) {
	nodes, err := config.LoadNodesTree(root)
	if err != nil {
		return nil, fmt.Errorf("cannot tell which nodes use images: %w", err)
	}
	return nodes, nil
}

func newImageListCmd() *cobra.Command {
	var (
		root   string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:     "list [DIR]",
		Aliases: []string{"ls"},
		Short:   "List images: size, files, the kernel nodes boot, the nodes that use each",
		RunE: func(cmd *cobra.Command, _ []string) error {
			nodes, err := treeNodes(root)
			if err != nil {
				return err
			}
			infos, err := image.List(root, nodes)
			if err != nil {
				return err
			}
			if asJSON {
				if infos == nil {
					infos = []image.Info{}
				}
				return writeJSON(cmd.OutOrStdout(), infos)
			}
			return image.WriteList(cmd.OutOrStdout(), infos)
		},
	}
	addTreeArg(cmd, &root)
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON instead of a table")
	return cmd
}

func newImageDeleteCmd() *cobra.Command {
	var (
		root  string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete images/NAME (refused while nodes use it, unless --force)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			nodes, err := treeNodes(root)
			if err != nil && !force {
				return err
			}
			if err := image.Delete(root, args[0], nodes, force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted image %s\n", args[0])
			return nil
		},
	}
	addRootFlag(cmd, &root)
	cmd.Flags().BoolVar(&force, "force", false, "delete even while nodes use it (they will fail to boot)")
	return cmd
}

func newImageExecCmd() *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "exec NAME -- CMD [ARG…]",
		Short: "Run a command chrooted in an image (with /proc, /sys, /dev, resolv.conf)",
		Long: `exec runs CMD inside images/NAME/rootfs, e.g. "wwserver image exec rocky9 -- dnf install -y slurm".
/proc, /sys, /dev and the host's /etc/resolv.conf are mounted in a private mount namespace, so they
disappear when the command ends, however it ends. The next boot serves the changed image.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return errors.New(`usage: wwserver image exec NAME -- CMD [ARG…]`)
			}
			return runInImage(cmd, root, args[0], args[1:])
		},
	}
	addRootFlag(cmd, &root)
	return cmd
}

func newImageShellCmd() *cobra.Command {
	var root string
	cmd := &cobra.Command{
		Use:   "shell NAME",
		Short: "Start an interactive shell in an image (as image exec NAME -- /bin/sh)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			shell := "/bin/sh"
			if _, err := os.Lstat(filepath.Join(root, "images", args[0], "rootfs", "bin", "bash")); err == nil {
				shell = "/bin/bash"
			}
			return runInImage(cmd, root, args[0], []string{shell})
		},
	}
	addRootFlag(cmd, &root)
	return cmd
}

// exitCode carries a command's exit status out of cobra.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func runInImage(cmd *cobra.Command, root, name string, argv []string) error {
	code, err := image.Exec(image.ExecOptions{
		Tree: root, Name: name, Argv: argv,
		Self:  []string{"/proc/self/exe", "image", chrootHelperName},
		Stdin: cmd.InOrStdin(), Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(),
	})
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("%s: %w", strings.Join(argv, " "), exitCode(code))
	}
	return nil
}

const chrootHelperName = "__chroot"

// newImageChrootHelperCmd is the hidden helper image exec re-executes in a
// new mount namespace.
func newImageChrootHelperCmd() *cobra.Command {
	return &cobra.Command{
		Use:    chrootHelperName + " ROOTFS -- CMD…",
		Hidden: true,
		Args:   cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := image.ChrootHelper(args[0], args[1:], image.InheritedLock(args[0]), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if code != 0 {
				return exitCode(code)
			}
			return nil
		},
	}
}
