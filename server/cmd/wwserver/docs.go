package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/wwcluster/ww/internal/buildinfo"
)

// buildVersion is set at link time: -ldflags "-X main.buildVersion=v1.2.3"
// (make build, make packages: git describe).
var buildVersion string

// genDocsCmd is the hidden command make packages runs to write the man pages
// (section 8, one per command) and the bash, zsh and fish completions from
// the command tree itself, so they cannot drift from the flags.
const genDocsCmd = "__gendocs"

func newGenDocsCmd() *cobra.Command {
	return &cobra.Command{
		Use:    genDocsCmd + " DIR",
		Short:  "Write man pages (DIR/man8) and shell completions (DIR/completions) for packaging",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeDocs(cmd.Root(), args[0])
		},
	}
}

func writeDocs(root *cobra.Command, dir string) error {
	man := filepath.Join(dir, "man8")
	comp := filepath.Join(dir, "completions")
	for _, d := range []string{man, comp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	root.DisableAutoGenTag = true // reproducible pages: no generation date
	hdr := &doc.GenManHeader{Section: "8", Source: "wwserver " + buildinfo.Version(buildVersion), Manual: "wwserver manual"}
	if err := doc.GenManTree(root, hdr, man); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	gens := []struct {
		name string
		gen  func(string) error
	}{
		{"wwserver.bash", func(p string) error { return root.GenBashCompletionFileV2(p, true) }},
		{"_wwserver", root.GenZshCompletionFile},
		{"wwserver.fish", func(p string) error { return root.GenFishCompletionFile(p, true) }},
	}
	for _, g := range gens {
		if err := g.gen(filepath.Join(comp, g.name)); err != nil {
			return fmt.Errorf("completion %s: %w", g.name, err)
		}
	}
	return nil
}
