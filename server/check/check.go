// Package check is `wwserver check`: it finds every problem of a served
// tree (config files, the images, kernels, overlays and iPXE templates
// nodes name, boot files) and warns about images/ (permissions, what
// killed imports left).
package check

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/wwcluster/ww/server/artifact"
	"github.com/wwcluster/ww/server/bootscript"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/hostlist"
	"github.com/wwcluster/ww/server/image"
)

// Images returns warnings about images/: reachable by other users,
// leftovers of killed imports.
func Images(root string) []string {
	var warnings []string
	if why, err := image.ImagesExposure(root); err != nil {
		warnings = append(warnings, fmt.Sprintf("images/: %v", err))
	} else if why != "" {
		warnings = append(warnings, why)
	}
	left, err := image.Leftovers(root)
	if err != nil {
		warnings = append(warnings, fmt.Sprintf("images/: %v", err))
	}
	for _, l := range left {
		warnings = append(warnings, l.String())
	}
	return warnings
}

// Tree returns every problem found in the served tree at root, one line
// each; log is the builder's (kernel checks).
func Tree(root string, log *slog.Logger) []string {
	srvPath := filepath.Join(root, config.ServerFile)
	srv, nodes, problems := load(srvPath, root)
	if srv == nil || nodes == nil {
		return problems
	}
	t, err := bootscript.NewIPXE(root)
	if err != nil {
		return append(problems, err.Error())
	}
	for _, err := range srv.BootFileProblems() {
		problems = append(problems, err.Error())
	}
	snap := &config.Snapshot{Server: srv, Nodes: nodes}
	b, err := artifact.New(artifact.Options{Root: root, Log: log})
	if err != nil {
		return append(problems, err.Error())
	}
	problems = append(problems, bootProblems(root, b, snap)...)
	problems = append(problems, perNode(root, t, snap)...)
	problems = append(problems, secureBoot(srvPath, b, snap)...)
	problems = append(problems, archProblems(root, b, snap)...)
	problems = append(problems, netDriverProblems(b, snap)...) // netdrivers.go
	problems = append(problems, tlsProblems(srvPath, root, srv)...)
	problems = append(problems, tlsPinless(root, snap)...)
	if fi, err := os.Stat(srv.TFTP.Dir); (srv.TFTP.Enabled) && (err != nil || !fi.IsDir()) {
		problems = append(problems, fmt.Sprintf("%s: tftp.dir: %q is not a directory", srvPath, srv.TFTP.Dir))
	}
	return problems
}

// load reads wwserver.toml and the nodes files, with their problems.
func load(srvPath, root string) (*config.Server, *config.Nodes, []string) {
	var problems []string
	srv, err := config.LoadServer(srvPath)
	if err != nil {
		problems = append(problems, config.ErrorLines(err)...)
	}
	nodes, err := config.LoadNodesTree(root)
	if err != nil {
		problems = append(problems, config.ErrorLines(err)...)
	}
	return srv, nodes, problems
}

// bootProblems are the images and kernels nodes cannot boot: once per
// image and kernel setting, naming the nodes concerned (an image of 10,000
// nodes is one line, not 10,000).
func bootProblems(root string, b *artifact.Builder, snap *config.Snapshot) []string {
	var problems []string
	for _, p := range artifact.NewBootChecker(b).Problems(snap) {
		first := p.Nodes[0]
		field := "kernel"
		if fi, err := os.Stat(filepath.Join(root, "images", first.Image, "rootfs")); err != nil || !fi.IsDir() {
			field = "image"
		}
		names := make([]string, len(p.Nodes))
		for i, n := range p.Nodes {
			names[i] = n.Name
		}
		problems = append(problems, nodesLine(first.File, names, "."+field, p.Err.Error()))
	}
	return problems
}

// perNode are the per-node problems: nodes with the same one in the same
// file make one line (10,000 nodes without a MAC are one line, not 10,000).
func perNode(root string, t *bootscript.IPXE, snap *config.Snapshot) []string {
	var per nodeProblems
	overlayOK := map[string]bool{}
	for _, n := range snap.Nodes.List {
		for _, list := range [][]string{n.SystemOverlays, n.RuntimeOverlays} {
			for _, o := range list {
				ok, seenBefore := overlayOK[o]
				if !seenBefore {
					fi, err := os.Stat(filepath.Join(root, "overlays", o))
					ok = err == nil && fi.IsDir()
					overlayOK[o] = ok
				}
				if !ok {
					per.add(n, "", fmt.Sprintf("overlay %q: no directory overlays/%s", o, o))
				}
			}
		}
		if n.Primary().HWAddr == "" && !n.Discoverable {
			per.add(n, ".network", "no device has a hwaddr, so the node cannot PXE boot")
		}
		if n.IPXETemplate != "" {
			if _, err := t.Render(io.Discard, snap, n, n.Primary().HWAddr); err != nil {
				msg := err.Error()
				if errors.Is(err, bootscript.ErrNoTemplate) {
					msg = fmt.Sprintf("iPXE template %q: no file ipxe/%s.ipxe", n.IPXETemplate, n.IPXETemplate)
				}
				per.add(n, ".ipxe_template", msg)
			}
		}
	}
	return per.lines()
}

// nodeProblems groups per-node problems by file, field and message.
type nodeProblems struct {
	order  []string
	groups map[string]*nodeGroup
}

type nodeGroup struct {
	file, field, msg string
	nodes            []string
}

// add records msg about n's field (".network", or "" for the node).
func (p *nodeProblems) add(n *config.Node, field, msg string) {
	k := n.File + "\x00" + field + "\x00" + msg
	g := p.groups[k]
	if g == nil {
		if p.groups == nil {
			p.groups = map[string]*nodeGroup{}
		}
		g = &nodeGroup{file: n.File, field: field, msg: msg}
		p.groups[k] = g
		p.order = append(p.order, k)
	}
	g.nodes = append(g.nodes, n.Name)
}

// lines are one line per group, in the order first seen.
func (p *nodeProblems) lines() []string {
	out := make([]string, 0, len(p.order))
	for _, k := range p.order {
		g := p.groups[k]
		out = append(out, nodesLine(g.file, g.nodes, g.field, g.msg))
	}
	return out
}

// nodesLine is "FILE: nodes.FIRST.FIELD: MSG", plus " (N nodes: LIST)"
// when more than one node has the problem.
func nodesLine(file string, names []string, field, msg string) string {
	line := fmt.Sprintf("%s: nodes.%s%s: %s", file, names[0], field, msg)
	if len(names) > 1 {
		line += fmt.Sprintf(" (%d nodes: %s)", len(names), hostlist.Compress(names))
	}
	return line
}
