package artifact

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/wwcluster/ww/server/config"

	"github.com/wwcluster/ww/server/hostkeys"
)

// withKeys gives a render the tree's host key store and the stamps of what
// it holds: the node's own keys in the node's inputs, the set of nodes with
// keys (known_hosts) and the cluster key in the shared inputs. Every node of
// the config has its cheap keys before the stamps are taken, so the stamps,
// known_hosts and every overlay's ETag depend on the config alone, not on
// which nodes happened to be rendered first.
func (b *Builder) withKeys(rc *renderCtx, nodes *config.Nodes) {
	rc.data.keys = hostkeys.New(b.root)
	b.keys.ensure(rc.data.keys, nodes, b.log)
	rc.data.keysStamp = rc.data.keys.NodeStamp(rc.data.Node.Name)
	rc.shared += "\x00hostkeys:" + rc.data.keys.Stamp()
}

// keysMade remembers the node set (config.Nodes.Hash) whose nodes all have
// their cheap host keys: made once per config generation, not per render.
type keysMade struct {
	mu   sync.Mutex // held while keys are made: one maker per generation
	hash string
}

// knownHostsWorkers bounds the key makers of one generation.
const knownHostsWorkers = 4

func (k *keysMade) ensure(s *hostkeys.Store, nodes *config.Nodes, log *slog.Logger) {
	if nodes == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.hash == nodes.Hash && nodes.Hash != "" {
		return
	}
	names := make([]string, len(nodes.List))
	for i, n := range nodes.List {
		names[i] = n.Name
	}
	_, err := s.EnsureAll(names, hostkeys.Cheap, knownHostsWorkers)
	if err == nil {
		_, err = s.ClusterKey() // also in the shared stamp
	}
	if err != nil {
		log.Error("making host keys", "err", err) // a render that needs them reports it too
		return
	}
	k.hash = nodes.Hash
}

// hostKeyFiles is the template function hostkeys: "keys", the node's SSH
// host key files (ssh_host_*_key and .pub), or "sshd", an sshd_config.d
// drop-in naming them as sshd's only HostKeys; the keys are, made the first time (ed25519 and ecdsa;
// RSA by `wwserver ssh keys`). Private keys may only go into a runtime
// overlay, which secure mode serves to root on the node alone; the system
// overlay is served to anyone who knows the MAC.
func hostKeyFiles(kind string, d *TemplateData) ([]hostkeys.File, error) {
	if d == nil || d.Node == nil || d.keys == nil {
		return nil, errors.New("hostkeys: no node")
	}
	if kind != "keys" && kind != "sshd" {
		return nil, fmt.Errorf("hostkeys: unknown kind %q (keys, sshd)", kind)
	}
	if !d.runtime {
		return nil, fmt.Errorf("hostkeys: node %q: host keys go only into runtime overlays (this overlay is a system overlay, served to anyone who knows the MAC)", d.Node.Name)
	}
	files, err := d.keys.Ensure(d.Node.Name, hostkeys.Cheap)
	if err != nil || kind == "keys" {
		return files, err
	}
	return []hostkeys.File{hostkeys.SSHDConfig(files)}, nil
}

// KnownHosts is ssh_known_hosts of every node ({{.KnownHosts}}: the same
// for every node, rendered once per change; withKeys made every node's keys).
func (d *TemplateData) KnownHosts() (string, error) {
	if d.keys == nil {
		return "", nil
	}
	return d.keys.KnownHosts(d.Nodes)
}

// ClusterRootKey is root's public key on the head node (made the first
// time), for root's authorized_keys on the nodes.
func (d *TemplateData) ClusterRootKey() (string, error) {
	if d.keys == nil {
		return "", nil
	}
	return d.keys.ClusterKey()
}
