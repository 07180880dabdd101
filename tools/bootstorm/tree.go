package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"

	"github.com/wwcluster/ww/server/atomicfile"
	"github.com/wwcluster/ww/server/config"
)

// netPlan is the storm's private network: the server namespace's address,
// the client namespace's own address, and the HTTP port.
type netPlan struct {
	ServerIP, ClientIP string
	PrefixLen          int
	Port               int
	ServerIf, ClientIf string
	IPXEDir            string // TFTP directory (Debian's ipxe package)
	// NodeRmem caps each simulated node's TCP receive buffer (the nodes'
	// namespace's net.ipv4.tcp_rmem maximum; 0: the host's).
	NodeRmem int
}

func (p netPlan) base() string { return fmt.Sprintf("http://%s:%d", p.ServerIP, p.Port) }

// adaptTree points the tree's wwserver.toml at the storm's network: the
// server's address and port, DHCP (reservations) on the server's veth and
// TFTP from the iPXE directory. Other keys are kept. It returns whether
// secure mode is on.
func adaptTree(root string, p netPlan) (secure bool, err error) {
	path := filepath.Join(root, config.ServerFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	srv := map[string]any{}
	if _, err := toml.Decode(string(data), &srv); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	srv["address"] = p.ServerIP
	srv["listen"] = fmt.Sprintf(":%d", p.Port)
	dhcp := subTable(srv, "dhcp")
	dhcp["enabled"] = true
	dhcp["mode"] = config.ModeReservation
	dhcp["interface"] = p.ServerIf
	dhcp["listen"] = ":67"
	dhcp["netmask"] = net.IP(net.CIDRMask(p.PrefixLen, 32)).String()
	tftp := subTable(srv, "tftp")
	tftp["enabled"] = true
	tftp["listen"] = ":69"
	tftp["dir"] = p.IPXEDir
	var buf bytes.Buffer
	buf.WriteString("# adapted by tools/bootstorm for a storm in its own network namespaces\n")
	if err := toml.NewEncoder(&buf).Encode(srv); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	s, err := config.ParseServer(path, buf.Bytes())
	if err != nil {
		return false, fmt.Errorf("adapted wwserver.toml does not load: %w", err)
	}
	if bytes.Equal(buf.Bytes(), data) {
		return s.IsSecure(), nil // adapted already (storm.sh does it before the cold build)
	}
	if err := atomicfile.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return false, err
	}
	return s.IsSecure(), nil
}

func subTable(m map[string]any, key string) map[string]any {
	if t, ok := m[key].(map[string]any); ok {
		return t
	}
	t := map[string]any{}
	m[key] = t
	return t
}

// treeNodes lists the first n nodes of the tree (by name) with their
// primary MAC and address; nodes without a MAC are skipped.
func treeNodes(root string, n int) ([]nodeSpec, error) {
	nodes, err := config.LoadNodes(filepath.Join(root, config.NodesFile))
	if err != nil {
		return nil, err
	}
	var out []nodeSpec
	for _, nd := range nodes.List {
		if len(out) == n {
			break
		}
		p := nd.Primary()
		if p.HWAddr == "" {
			continue
		}
		out = append(out, nodeSpec{MAC: p.HWAddr, IP: p.IPAddr})
	}
	if len(out) < n {
		return nil, fmt.Errorf("%s lists %d nodes with a MAC; %d wanted", root, len(out), n)
	}
	return out, nil
}
