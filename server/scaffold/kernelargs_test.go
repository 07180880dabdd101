package scaffold

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

// TestDefaultKernelArgsQuiet: the nodes of a new tree boot with "quiet" (the
// kernel's boot messages on a serial console cost seconds per boot; see
// nodes.toml) and keep the serial and VGA consoles.
func TestDefaultKernelArgsQuiet(t *testing.T) {
	dir := t.TempDir()
	files, err := renderTree(dir, "10.0.0.1", ":9873")
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := config.ParseNodes(filepath.Join(dir, config.NodesFile), files[config.NodesFile])
	if err != nil {
		t.Fatal(err)
	}
	n := nodes.ByName["n001"]
	if n == nil {
		t.Fatal("no node n001 in the scaffold")
	}
	for _, want := range []string{"quiet", "console=ttyS0", "console=tty0"} {
		if !slices.Contains(n.KernelArgs, want) {
			t.Errorf("n001 kernel_args %q: no %q", n.KernelArgs, want)
		}
	}
}
