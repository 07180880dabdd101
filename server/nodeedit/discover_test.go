package nodeedit

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

func discoverTree(t *testing.T, names ...string) string {
	t.Helper()
	dir := newTree(t)
	yes := true
	if _, err := New(dir).Edit(func(tr *Tree) error {
		for _, n := range names {
			e := &config.Entry{Profiles: []string{"default"}, Discoverable: &yes,
				Network: map[string]*config.NetDevEntry{"eth1": {IPAddr: str("10.0.0." + n[1:])}}}
			if err := tr.Add(Node, n, e); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDiscoverInNameOrder(t *testing.T) {
	dir := discoverTree(t, "d12", "d10", "d11")
	st, err := config.NewStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDiscoverer(st, nil)
	for i, want := range []string{"d10", "d11", "d12", ""} {
		mac := fmt.Sprintf("52:54:00:aa:00:%02x", i)
		snap, n, err := d.Discover(mac)
		if err != nil {
			t.Fatal(err)
		}
		if want == "" {
			if n != nil {
				t.Fatalf("%s got %s with no node left", mac, n.Name)
			}
			continue
		}
		if n == nil || n.Name != want || n.Primary().HWAddr != mac || n.Primary().Name != "eth1" {
			t.Fatalf("%s: got %+v, want %s on eth1", mac, n, want)
		}
		if snap.Nodes.ByMAC[mac] != n || st.Current().Nodes.ByMAC[mac] == nil {
			t.Fatalf("%s: snapshot does not index the discovered node", mac)
		}
	}
	// What was written is what a fresh load sees.
	ns, err := config.LoadNodesTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ns.ByMAC["52:54:00:aa:00:00"].Name != "d10" || len(ns.Undiscovered) != 0 {
		t.Errorf("on disk: %v undiscovered %d", ns.ByMAC["52:54:00:aa:00:00"], len(ns.Undiscovered))
	}
}

// Many unknown MACs at once, through two servers (two stores, two
// discoverers) on one tree: every node goes to exactly one MAC.
func TestDiscoverConcurrentNeverSharesANode(t *testing.T) {
	dir := discoverTree(t, "d1", "d2", "d3")
	var ds []*Discoverer
	for range 2 {
		st, err := config.NewStore(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, NewDiscoverer(st, nil))
	}
	const macs = 10
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		got = map[string]string{} // node → MAC
	)
	for i := range macs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := fmt.Sprintf("52:54:00:bb:00:%02x", i)
			_, n, err := ds[i%2].Discover(mac)
			if err != nil {
				t.Error(err)
				return
			}
			if n == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if prev, dup := got[n.Name]; dup {
				t.Errorf("node %s given to %s and %s", n.Name, prev, mac)
			}
			got[n.Name] = mac
		}()
	}
	wg.Wait()
	if len(got) != 3 {
		t.Fatalf("assigned %v, want all of d1, d2, d3", got)
	}
	ns, err := config.LoadNodesTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, mac := range got {
		if n := ns.ByMAC[mac]; n == nil || n.Name != name {
			t.Errorf("on disk %s → %v, want %s", mac, n, name)
		}
	}
	// Asking again with an assigned MAC gives the same node, no new write.
	for name, mac := range got {
		if _, n, err := ds[0].Discover(mac); err != nil || n == nil || n.Name != name {
			t.Errorf("repeat %s: %v %v", mac, n, err)
		}
	}
}

// TestDiscoverRefusesNonUnicastMACs (issue 20, Low 11): all zeros,
// broadcast and multicast MACs never claim a discoverable node.
func TestDiscoverRefusesNonUnicastMACs(t *testing.T) {
	dir := discoverTree(t, "d10")
	st, err := config.NewStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDiscoverer(st, nil)
	for _, mac := range []string{"ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "01:00:5e:00:00:01", "33:33:00:00:00:01"} {
		_, n, err := d.Discover(mac)
		if err == nil || n != nil {
			t.Errorf("%s: node %v, err %v; want refused", mac, n, err)
		} else if !strings.Contains(err.Error(), "not a network card's") {
			t.Errorf("%s: unclear error %v", mac, err)
		}
	}
	if ns, _ := config.LoadNodesTree(dir); len(ns.Undiscovered) != 1 {
		t.Fatalf("a refused MAC took the slot: %d undiscovered", len(ns.Undiscovered))
	}
	if _, n, err := d.Discover("52:54:00:aa:00:01"); err != nil || n == nil || n.Name != "d10" {
		t.Errorf("a unicast MAC after the refused ones: %v %v", n, err)
	}
}
