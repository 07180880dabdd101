package nodeedit

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/wwcluster/ww/server/config"
)

// Discoverer gives discoverable nodes that have no MAC yet to unknown MACs
// that ask for an iPXE script, first come first served, in name order.
type Discoverer struct {
	editor *Editor
	store  *config.Store
	log    *slog.Logger
	mu     sync.Mutex // one discovery at a time in this process (flock covers others)
}

// NewDiscoverer returns a discoverer for the tree store serves.
func NewDiscoverer(store *config.Store, log *slog.Logger) *Discoverer {
	if log == nil {
		log = slog.Default()
	}
	return &Discoverer{editor: New(store.Root()), store: store, log: log}
}

// Discover assigns mac to the first undiscovered node, writes it to the
// node's nodes.d file and returns the reloaded snapshot and the node. It
// returns a nil node when no node is waiting. A MAC that is already known
// (assigned by a concurrent request) gets its node back. An all-zeros,
// broadcast or multicast MAC is an error and gets nothing.
func (d *Discoverer) Discover(mac string) (*config.Snapshot, *config.Node, error) {
	// A MAC no network card has (forged, or a broken client) never gets a
	// node; the HTTP side refuses it before asking (BAD_MAC).
	if err := config.CheckUnicastMAC(mac); err != nil {
		return nil, nil, fmt.Errorf("discover: %w", err)
	}
	if snap := d.store.Fresh(); snap.Nodes.ByMAC[mac] != nil {
		return snap, snap.Nodes.ByMAC[mac], nil
	} else if len(snap.Nodes.Undiscovered) == 0 {
		return nil, nil, nil // the common case: nothing to give, no lock, no parse
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	snap := d.store.Fresh()
	if n := snap.Nodes.ByMAC[mac]; n != nil {
		return snap, n, nil
	}
	if len(snap.Nodes.Undiscovered) == 0 {
		return nil, nil, nil
	}
	var (
		chosen string
		dev    string
	)
	_, err := d.editor.Edit(func(t *Tree) error {
		cur, err := t.Current()
		if err != nil {
			return err
		}
		if n := cur.ByMAC[mac]; n != nil { // assigned by another process
			chosen = n.Name
			return nil
		}
		if len(cur.Undiscovered) == 0 {
			return nil
		}
		n := cur.Undiscovered[0]
		e, err := t.Get(Node, n.Name)
		if err != nil {
			return err
		}
		dev = "eth0"
		if len(n.Network) > 0 {
			dev = n.Primary().Name
		}
		if e.Network == nil {
			e.Network = map[string]*config.NetDevEntry{}
		}
		nd := e.Network[dev]
		if nd == nil {
			nd = &config.NetDevEntry{}
			e.Network[dev] = nd
		}
		m := mac
		nd.HWAddr = &m
		chosen = n.Name
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("discover %s: %w", mac, err)
	}
	if chosen == "" {
		return nil, nil, nil
	}
	// Reload under the edit lock: another server discovering at the same
	// moment would otherwise keep the files changing under our read.
	if err := d.editor.Locked(d.store.Reload); err != nil {
		return nil, nil, fmt.Errorf("discover %s: reload: %w", mac, err)
	}
	snap = d.store.Current()
	n := snap.Nodes.ByMAC[mac]
	if n == nil {
		return nil, nil, fmt.Errorf("discover %s: node %s not found after reload", mac, chosen)
	}
	if dev != "" {
		d.log.Info("discovered node", "node", n.Name, "mac", mac, "device", dev, "file", n.File)
	}
	return snap, n, nil
}
