package artifact

import (
	"errors"

	"github.com/wwcluster/ww/server/netrender"
)

// NetworkStack is the stack the node's network devices are rendered for:
// its network_stack, or for auto what its image has (netrender.Resolve).
func (d *TemplateData) NetworkStack() string {
	if d.netStack == "" {
		return netrender.Resolve(d.Node.NetworkStack, d.imageDir)
	}
	return d.netStack
}

// netFiles is the template function netfiles: the node's network files of
// one kind (netrender.Files), for {{range netfiles "networkd" .}}{{file
// .Name}}{{.Content}}{{end}}. Passing . makes the template per node.
func netFiles(kind string, d *TemplateData) ([]netrender.File, error) {
	if d == nil || d.Node == nil {
		return nil, errors.New("netfiles: no node")
	}
	return netrender.Files(kind, d.NetworkStack(), d.Node)
}
