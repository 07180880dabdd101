package artifact

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	"github.com/wwcluster/ww/wwclient/apply"
)

func TestUsesNode(t *testing.T) {
	for src, want := range map[string]bool{
		"static":                               false,
		"{{.Server.Address}}:{{.Server.Port}}": false,
		"{{range .Nodes}}{{.Primary.IPAddr}} {{.Name}}\n{{end}}": false,
		"{{range .Nodes}}{{$.Server.Address}}{{end}}":            false,
		"{{range $i, $n := .Nodes}}{{$n.Name}}{{end}}":           false,
		"{{with .Server}}{{.Address}}{{else}}x{{end}}":           false,
		"{{len .Nodes}} {{upper \"x\"}}":                         false,
		"{{.Node.Name}}":                                         true,
		"{{$.Node.Name}}":                                        true,
		"{{with .Node}}{{.Name}}{{end}}":                         true,
		"{{$n := .Node}}{{$n.Name}}":                             true,
		"{{range .Nodes}}{{end}}{{.}}":                           true,
		"{{printf \"%v\" $}}":                                    true,
		"{{define \"x\"}}{{.Node.Name}}{{end}}ok":                true,
		"{{template \"y\" .}}{{define \"y\"}}{{end}}":            true,
		"{{if .Server.Secure}}{{else}}{{.Node.AssetKey}}{{end}}": true,
		"{{(.Node).Name}}":                                       true,
		"{{join .Node.KernelArgs \" \"}}":                        true,
	} {
		tmpl, err := template.New("t").Funcs(templateFuncs).Parse(src)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if got := usesNode(tmpl); got != want {
			t.Errorf("usesNode(%q) = %v, want %v", src, got, want)
		}
	}
}

// TestNodeIndependentTemplates: overlays whose templates do not use .Node
// are rendered once and shared by all nodes, per nodes.toml generation.
func TestNodeIndependentTemplates(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	// generic: only node-independent templates.
	tt.file("overlays/generic/etc/issue.ww", "server {{.Server.Address}}\n", 0o644)
	tt.file("overlays/generic/etc/hosts.ww", "{{range .Nodes}}{{.Primary.IPAddr}} {{.Name}}\n{{end}}", 0o644)
	snap := snapshot(t, testNodesTOML)
	b, reg := newBuilder(t, tt.root)
	r1, err := b.RuntimeOverlay(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	r2, err := b.RuntimeOverlay(bg, snap, snap.Nodes.ByName["n002"])
	if err != nil {
		t.Fatal(err)
	}
	if r1.ETag != r2.ETag || len(r1.Parts) != 2 || r1.Parts[1] != r2.Parts[1] {
		t.Error("node-independent runtime overlay not shared")
	}
	if n := counter(t, reg, "wwserver_build_builds_total", "overlay_rendered"); n != 1 {
		t.Errorf("%v rendered members built, want 1", n)
	}
	if got := unpack(t, r1)["etc/hosts"].data; got != "10.0.2.11 n001\n10.0.2.12 n002\n" {
		t.Errorf("hosts %q", got)
	}
	snap2 := snapshot(t, strings.Replace(testNodesTOML, "10.0.2.12", "10.0.2.13", 1))
	r3, err := b.RuntimeOverlay(bg, snap2, snap2.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	if r3.ETag == r1.ETag || !strings.Contains(unpack(t, r3)["etc/hosts"].data, "10.0.2.13 n002") {
		t.Error("nodes.toml change not seen by a node-independent template")
	}
	// Mixed: a per-node template goes into a member per node, while the
	// node-independent ones stay in one shared member, stored once.
	tt.file("overlays/generic/etc/hostname.ww", "{{.Node.Name}}\n", 0o644)
	r4, _ := b.RuntimeOverlay(bg, snap2, snap2.Nodes.ByName["n001"])
	r5, _ := b.RuntimeOverlay(bg, snap2, snap2.Nodes.ByName["n002"])
	if len(r4.Parts) != 3 || r4.Parts[1] != r5.Parts[1] || r4.Parts[2] == r5.Parts[2] {
		t.Errorf("mixed templates: parts\n%v\n%v", r4.Parts, r5.Parts)
	}
	f4, f5 := unpack(t, r4), unpack(t, r5)
	if r4.ETag == r5.ETag || f4["etc/hostname"].data != "n001\n" || f5["etc/hostname"].data != "n002\n" ||
		f4["etc/hosts"].data != f5["etc/hosts"].data || !strings.Contains(f5["etc/hosts"].data, "10.0.2.13 n002") {
		t.Errorf("mixed templates: %q %q", f4["etc/hostname"].data, f5["etc/hosts"].data)
	}
}

// TestRuntimeOverlayApplies: wwclient applies the runtime overlay as served
// (files, rendered and node members concatenated) and gets every file.
func TestRuntimeOverlayApplies(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	tt.file("overlays/generic/etc/hosts.ww", "{{range .Nodes}}{{.Primary.IPAddr}} {{.Name}}\n{{end}}", 0o644)
	snap := snapshot(t, testNodesTOML)
	b, _ := newBuilder(t, tt.root)
	a, err := b.RuntimeOverlay(bg, snap, snap.Nodes.ByName["n002"])
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Parts) != 3 {
		t.Fatalf("%d parts, want 3 (files, rendered, node)", len(a.Parts))
	}
	r, err := a.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	root := t.TempDir()
	if _, err := apply.Apply(root, r, apply.Options{}); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]string{
		"etc/static": "same for all\n",
		"etc/hosts":  "10.0.2.11 n001\n10.0.2.12 n002\n",
		"etc/issue":  "N002 rack=r2 args=console=ttyS0,quiet prefix=16 abc\n",
	} {
		got, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", rel, got, err, want)
		}
	}
}
