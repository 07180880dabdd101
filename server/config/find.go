package config

import (
	"fmt"

	"github.com/wwcluster/ww/server/nodeapi"
)

// Find resolves NODE|MAC (the render commands' operand). For a MAC it
// returns the normalised MAC and the node (nil when no node has it); for a
// name, the node and its primary MAC.
func (s *Snapshot) Find(arg string) (n *Node, mac string, err error) {
	if m, err := nodeapi.NormalizeMAC(arg); err == nil {
		return s.Nodes.ByMAC[m], m, nil
	}
	n = s.Nodes.ByName[arg]
	if n == nil {
		return nil, "", fmt.Errorf("no node named %q (and it is not a MAC address)", arg)
	}
	return n, n.Primary().HWAddr, nil
}
