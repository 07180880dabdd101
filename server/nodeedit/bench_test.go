package nodeedit

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

// benchTree writes a served tree with n nodes in nodes.d/managed.toml, as
// `wwserver node add 'c[...]' --hwaddr ... --ipaddr ...` leaves it, and
// returns its root.
func benchTree(b *testing.B, n int) string {
	b.Helper()
	dir := b.TempDir()
	var m strings.Builder
	m.WriteString(managedHeader)
	m.WriteString("[nodes]\n")
	for i := range n {
		fmt.Fprintf(&m, "[nodes.c%06d]\nprofiles = [\"default\"]\n[nodes.c%06d.network]\n[nodes.c%06d.network.eth0]\n"+
			"hwaddr = \"52:54:%02x:%02x:%02x:%02x\"\nipaddr = \"10.%d.%d.%d\"\n",
			i, i, i, i>>24&0xff, i>>16&0xff, i>>8&0xff, i&0xff, 16+i>>16&0xff, i>>8&0xff, i&0xff)
	}
	for name, s := range map[string]string{
		config.NodesFile:  "[profiles.default]\nimage = \"debian\"\n",
		config.ServerFile: serverTOML,
		filepath.Join(config.NodesDir, ManagedFile): m.String(),
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	if nodes, err := config.LoadNodesTree(dir); err != nil || len(nodes.List) != n {
		b.Fatalf("bench tree: %v", err)
	}
	return dir
}

// BenchmarkEdit is one `node add` of one node and one `node set` of one
// node into trees of 10,000 and 100,000 nodes (make bench-edit, and
// BENCHMARKS.md "Editing nodes").
func BenchmarkEdit(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run("nodes="+strconv.Itoa(n), func(b *testing.B) {
			dir := benchTree(b, n)
			ed := New(dir)
			b.Run("add1", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					_, err := ed.Edit(func(t *Tree) error {
						return t.Add(Node, fmt.Sprintf("new%d", i), &config.Entry{Profiles: []string{"default"}})
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("set1", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					_, err := ed.Edit(func(t *Tree) error {
						e, err := t.Get(Node, "c000001")
						if err != nil {
							return err
						}
						e.Tags = map[string]string{"rack": strconv.Itoa(i)}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
