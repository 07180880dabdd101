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
	scripts map[renderKey][]byte
}

// get returns the script cached for key; a new snapshot or server list
// empties the cache first.
func (c *renderCache) get(snap *config.Snapshot, servers string, key renderKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snap != snap || c.servers != servers {
		c.snap, c.servers, c.scripts = snap, servers, map[renderKey][]byte{}
	}
	script, ok := c.scripts[key]
	return script, ok
}

// put caches script unless the snapshot or server list moved on while it
// was rendered.
func (c *renderCache) put(snap *config.Snapshot, servers string, key renderKey, script []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snap == snap && c.servers == servers {
		c.scripts[key] = script
	}
}

type renderKey struct {
	tmpl   *template.Template // a changed template file is a new pointer
	node   *config.Node
	mac    string
	via    string // GRUB's transport ("" for iPXE)
	digest string // two-stage image digest
	arch   string // the image's architecture
}
