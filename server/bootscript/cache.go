package bootscript

import (
	"sync"
	"text/template"

	"github.com/wwcluster/ww/server/config"
)

// renderCache keeps the rendered scripts of the current config snapshot
// and server list: a script depends only on (snapshot, servers, template,
// node, MAC), so the hot path renders each once per config or membership
// change. Bounded by the MACs in nodes.toml.
type renderCache struct {
	mu      sync.Mutex
	snap    *config.Snapshot
	servers string // the server list joined by ","
	// scripts are found by node first: a pointer hashes in a few
	// nanoseconds where the whole key (MAC, digest, …) would be hashed on
	// every request; a node has one entry per MAC and transport it boots
	// with, compared in turn.
	scripts map[*config.Node][]rendered
}

type rendered struct {
	key    renderKey
	script []byte
}

// get returns the script cached for key; a new snapshot or server list
// empties the cache first.
func (c *renderCache) get(snap *config.Snapshot, servers string, key renderKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snap != snap || c.servers != servers {
		c.snap, c.servers, c.scripts = snap, servers, map[*config.Node][]rendered{}
	}
	for _, r := range c.scripts[key.node] {
		if r.key == key {
			return r.script, true
		}
	}
	return nil, false
}

// put caches script unless the snapshot or server list moved on while it
// was rendered (or another request cached it meanwhile).
func (c *renderCache) put(snap *config.Snapshot, servers string, key renderKey, script []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snap != snap || c.servers != servers {
		return
	}
	for _, r := range c.scripts[key.node] {
		if r.key == key {
			return
		}
	}
	c.scripts[key.node] = append(c.scripts[key.node], rendered{key: key, script: script})
}

type renderKey struct {
	tmpl   *template.Template // a changed template file is a new pointer
	node   *config.Node
	mac    string
	via    string // GRUB's transport ("" for iPXE)
	digest string // two-stage image digest
	arch   string // the image's architecture
}
