package artifact

import (
	"strings"
	"testing"
)

// TestNodesHoldNoAssetKeys: a template cannot read other nodes' asset keys
// through .Nodes (a system overlay is served to anyone who knows a MAC).
func TestNodesHoldNoAssetKeys(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	tt.file("overlays/wwinit/etc/leak.ww", "{{range .Nodes}}{{.Name}}={{.AssetKey}};{{end}}\n", 0o644)
	snap := snapshot(t, testNodesTOML)
	b, _ := newBuilder(t, tt.root)
	a, err := b.SystemOverlay(bg, snap, snap.Nodes.ByName["n002"])
	if err == nil {
		if leak := unpack(t, a)["etc/leak"].data; strings.Contains(leak, "secret1") {
			t.Fatalf("n002's system overlay holds n001's asset key: %q", leak)
		}
		t.Fatal("a template reading .AssetKey of .Nodes rendered without error")
	}
	if !strings.Contains(err.Error(), "AssetKey") {
		t.Errorf("error does not name the field: %v", err)
	}
	// What templates legitimately read from .Nodes still works.
	tt.file("overlays/wwinit/etc/leak.ww", "{{range .Nodes}}{{.Primary.IPAddr}} {{.Name}} {{.Tags.rack}}\n{{end}}", 0o644)
	a, err = b.SystemOverlay(bg, snap, snap.Nodes.ByName["n002"])
	if err != nil {
		t.Fatal(err)
	}
	if got := unpack(t, a)["etc/leak"].data; got != "10.0.2.11 n001 r1\n10.0.2.12 n002 r2\n" {
		t.Errorf("hosts-like template = %q", got)
	}
}

// TestBMCPasswordNotInTemplates: a node's BMC password (inline, on the node
// or its profile) is in no template data: not in .Node, not in .Nodes,
// not even printed whole with %#v; the rendered overlays do not hold it.
func TestBMCPasswordNotInTemplates(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	dump := `{{printf "%#v %+v %#v" .Node .Node.BMC .Node.BMC}}{{range .Nodes}}{{printf "%#v %+v" . .BMC}}{{end}}` + "\n"
	tt.file("overlays/wwinit/etc/dump.ww", dump, 0o644)
	tt.file("overlays/generic/etc/dump.ww", dump+"{{.Node.BMC.Address}} {{.Node.BMC.Password}}\n", 0o600)
	nodes := testNodesTOML + `
[profiles.default.bmc]
username = "admin"
password = "bmc-secret-profile"
[nodes.n001.bmc]
address = "10.9.0.1"
password = "bmc-secret-node"
`
	snap := snapshot(t, nodes)
	b, _ := newBuilder(t, tt.root)
	for _, name := range []string{"n001", "n002"} {
		n := snap.Nodes.ByName[name]
		sys, err := b.SystemOverlay(bg, snap, n)
		if err != nil {
			t.Fatal(err)
		}
		run, err := b.RuntimeOverlay(bg, snap, n)
		if err != nil {
			t.Fatal(err)
		}
		for what, a := range map[string]*Artifact{"system": sys, "runtime": run} {
			raw := unpack(t, a)["etc/dump"].data
			if strings.Contains(raw, "bmc-secret") {
				t.Fatalf("%s's %s overlay holds a BMC password: %q", name, what, raw)
			}
			if !strings.Contains(raw, `Username:"admin"`) {
				t.Errorf("%s's %s overlay: the dump shows no BMC settings at all (test broken?): %q", name, what, raw)
			}
		}
	}
	if got := snap.Nodes.BMCPassword("n001"); got != "bmc-secret-node" {
		t.Errorf("BMCPassword(n001) = %q", got)
	}
}
