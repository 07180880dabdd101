package nodeedit

import (
	"reflect"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

// TestFieldsNetworkDrivers: --network-drivers sets the list (written to
// nodes.d/ and read back), refuses a name that is not a module name, and a
// lone "" unsets it.
func TestFieldsNetworkDrivers(t *testing.T) {
	dir := newTree(t)
	ed := New(dir)
	set := func(vals ...string) error {
		f := Fields{NetworkDrivers: vals, Given: func(flag string) bool { return flag == "network-drivers" }}
		_, err := ed.Edit(func(tr *Tree) error {
			e, err := tr.Get(Node, "c1")
			if err != nil {
				e = &config.Entry{Profiles: []string{"default"}}
				if err := tr.Add(Node, "c1", e); err != nil {
					return err
				}
			}
			return f.Apply(e, "c1", 0)
		})
		return err
	}
	if err := set("virtio_net", "mlx5-core"); err != nil {
		t.Fatal(err)
	}
	ns, err := config.LoadNodesTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := ns.ByName["c1"].NetworkDrivers; !reflect.DeepEqual(got, []string{"virtio_net", "mlx5-core"}) {
		t.Fatalf("network_drivers %q", got)
	}
	if err := set("virtio_net", "../x"); err == nil || !strings.Contains(err.Error(), "--network-drivers: module name \"../x\"") {
		t.Fatalf("bad name: %v", err)
	}
	if err := set(""); err != nil {
		t.Fatal(err)
	}
	if ns, err = config.LoadNodesTree(dir); err != nil {
		t.Fatal(err)
	}
	if got := ns.ByName["c1"].NetworkDrivers; got != nil {
		t.Fatalf("after unset: %q", got)
	}
}
