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
