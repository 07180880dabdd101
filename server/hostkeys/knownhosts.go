package hostkeys

import (
	"fmt"
	"os"
	"strings"

	"github.com/wwcluster/ww/server/config"
)

// KnownHosts renders ssh_known_hosts for the nodes that have keys: one line
// per node with its name and every address of its devices, and its ed25519
// key (OpenSSH prefers the type known_hosts holds; one type keeps the file at
// ~100 bytes a node). Nodes without keys yet are left out.
func (s *Store) KnownHosts(nodes []*config.PublicNode) (string, error) {
	var b strings.Builder
	b.WriteString("# SSH host keys of the cluster's nodes, rendered by wwserver (hostkeys/)\n")
	for _, n := range nodes {
		pub, err := os.ReadFile(s.Path("nodes", n.Name, keyFile(Ed25519)+".pub"))
		if err != nil {
			if os.IsNotExist(err) || checkName(n.Name) != nil {
				continue
			}
			return "", fmt.Errorf("known hosts: %w", err)
		}
		f := strings.Fields(string(pub))
		if len(f) < 2 {
			return "", fmt.Errorf("known hosts: %s: bad public key file", n.Name)
		}
		names := []string{n.Name}
		for _, d := range n.Network {
			for _, a := range []string{d.IPAddr, d.IPAddr6} {
				if a != "" {
					names = append(names, a)
				}
			}
		}
		fmt.Fprintf(&b, "%s %s %s\n", strings.Join(names, ","), f[0], f[1])
	}
	return b.String(), nil
}

// WriteKnownHosts writes the head node's copy, hostkeys/ssh_known_hosts
// (for ssh -o UserKnownHostsFile=… or /etc/ssh/ssh_known_hosts).
func (s *Store) WriteKnownHosts(nodes []*config.PublicNode) (string, error) {
	kh, err := s.KnownHosts(nodes)
	if err != nil {
		return "", err
	}
	if err := mkdirPrivate(s.dir); err != nil {
		return "", err
	}
	p := s.Path(KnownHostsFile)
	return p, writeFile(p, []byte(kh))
}
