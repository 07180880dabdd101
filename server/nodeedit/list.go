package nodeedit

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/BurntSushi/toml"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/hostlist"
)

// SelectNodes returns the nodes a hostlist pattern names, in pattern order;
// a name with no node is an error.
func SelectNodes(nodes *config.Nodes, pattern string) ([]*config.Node, error) {
	names, err := hostlist.Expand(pattern)
	if err != nil {
		return nil, err
	}
	var list []*config.Node
	for _, n := range names {
		node := nodes.ByName[n]
		if node == nil {
			return nil, fmt.Errorf("no node named %q", n)
		}
		list = append(list, node)
	}
	return list, nil
}

// ProfileRow is one profile as written, with the file that defines it.
type ProfileRow struct {
	Name string `json:"name"`
	File string `json:"file"`
	*config.Entry
}

// Profiles lists the profiles of the tree at root as written (not merged),
// sorted by name, each with its file relative to root. A tree that does not
// load is an error.
func Profiles(root string) ([]ProfileRow, error) {
	srcs, err := config.NodesSources(root)
	if err != nil {
		return nil, err
	}
	if _, err := config.ParseNodesFiles(srcs); err != nil {
		return nil, err
	}
	var rows []ProfileRow
	for _, src := range srcs {
		var f config.File
		if err := toml.Unmarshal(src.Data, &f); err != nil {
			return nil, fmt.Errorf("%s: %w", src.Path, err)
		}
		for name, e := range f.Profiles {
			if e == nil {
				e = &config.Entry{}
			}
			rel, _ := filepath.Rel(root, src.Path)
			rows = append(rows, ProfileRow{Name: name, File: rel, Entry: e})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return rows, nil
}

// WriteNodes prints resolved nodes as a table, "-" for what is unset.
func WriteNodes(w io.Writer, nodes []*config.Node) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMAC\tIP\tIMAGE\tSYSTEM OVERLAYS\tRUNTIME OVERLAYS\tROOT")
	for _, n := range nodes {
		p := n.Primary()
		if p.HWAddr == "" && n.Discoverable {
			p.HWAddr = "(discoverable)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, dash(p.HWAddr), dash(p.IPAddr), n.Image,
			dash(strings.Join(n.SystemOverlays, ",")), dash(strings.Join(n.RuntimeOverlays, ",")), n.Root)
	}
	_ = tw.Flush()
}

// WriteProfiles prints profiles as written, as a table.
func WriteProfiles(w io.Writer, rows []ProfileRow) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFILE\tIMAGE\tSYSTEM OVERLAYS\tRUNTIME OVERLAYS\tKERNEL ARGS")
	for _, r := range rows {
		img := ""
		if r.Image != nil {
			img = *r.Image
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.File, dash(img), joinList(r.SystemOverlays),
			joinList(r.RuntimeOverlays), strings.Join(r.KernelArgs, " "))
	}
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// joinList is a list for a table cell: comma-separated, "-" when empty.
func joinList(l []string) string {
	if len(l) == 0 {
		return "-"
	}
	return strings.Join(l, ",")
}
