package bootscript

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/bootplan"
	"github.com/wwcluster/ww/server/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// The nodes of server/provision's tests, whose handler serves these goldens too.
const testNodes = `
[profiles.default]
image = "debian"
kernel_args = ["console=ttyS0", "quiet"]
system_overlays = ["wwinit"]
runtime_overlays = ["generic"]

[nodes.n001]
profiles = ["default"]
asset_key = "s3cret"
[nodes.n001.network.eth0]
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.0.2.11"

[nodes.n002]
profiles = ["default"]
[nodes.n002.network.eth0]
hwaddr = "52:54:00:00:00:02"
ipaddr = "10.0.2.12"

[nodes.n003]
profiles = ["default"]
ipxe_template = "custom"
root = "initramfs"
[nodes.n003.network.eth0]
hwaddr = "52:54:00:00:00:03"
`

const (
	macN001 = "52:54:00:00:00:01"
	macN002 = "52:54:00:00:00:02"
	macN003 = "52:54:00:00:00:03"
	self    = "10.0.2.1:9873"
)

func snapshot(t *testing.T, secure bool) *config.Snapshot {
	t.Helper()
	srv, err := config.ParseServer("wwserver.toml", []byte(fmt.Sprintf("address = \"10.0.2.1\"\nsecure = %v\n", secure)))
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := config.ParseNodes("nodes.toml", []byte(testNodes))
	if err != nil {
		t.Fatal(err)
	}
	return &config.Snapshot{Server: srv, Nodes: nodes, LoadedAt: time.Now()}
}

func newIPXE(t *testing.T) (*IPXE, string) {
	t.Helper()
	root := t.TempDir()
	r, err := NewIPXE(root)
	if err != nil {
		t.Fatal(err)
	}
	return r, root
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from %s (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", name, path, got, want)
	}
}

func TestIPXEGolden(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secure  bool
		mac     string
		servers []string
	}{
		{"ipxe_secure", true, macN002, []string{self}},
		{"ipxe_insecure", false, macN002, []string{self}},
		{"ipxe_insecure_assetkey", false, macN001, []string{self}},
		{"ipxe_two_servers", false, macN002, []string{self, "10.0.2.2:9873"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newIPXE(t)
			snap := snapshot(t, tc.secure)
			n := snap.Nodes.ByMAC[tc.mac]
			script, sent, err := r.Script(Request{Snap: snap, Node: n, MAC: tc.mac, Servers: tc.servers})
			if err != nil || sent != "ipxe" {
				t.Fatalf("Script: sent %q, err %v", sent, err)
			}
			golden(t, tc.name, script)
			// The uncached path renders the same plan the same way.
			var buf bytes.Buffer
			if sent, err := r.RenderPlan(&buf, bootplan.New(snap.Server, n, tc.mac, tc.servers[1:])); err != nil || sent != "ipxe" {
				t.Fatalf("RenderPlan: sent %q, err %v", sent, err)
			}
			if buf.String() != string(script) {
				t.Errorf("RenderPlan differs from Script:\n%s\n---\n%s", buf.String(), script)
			}
		})
	}
}

func TestIPXEUnknownGolden(t *testing.T) {
	r, _ := newIPXE(t)
	var buf bytes.Buffer
	if err := r.RenderUnknown(&buf, snapshot(t, true), "52:54:00:00:00:99"); err != nil {
		t.Fatal(err)
	}
	golden(t, "ipxe_unknown", buf.Bytes())
}

// TestRenderCLI: Render is the plan of this server alone.
func TestRenderCLI(t *testing.T) {
	r, _ := newIPXE(t)
	snap := snapshot(t, false)
	var buf bytes.Buffer
	if _, err := r.Render(&buf, snap, snap.Nodes.ByMAC[macN002], macN002); err != nil {
		t.Fatal(err)
	}
	golden(t, "ipxe_insecure", buf.Bytes())
}

// TestIPXEDataFields: the fields admins' templates use keep their names
// and meaning.
func TestIPXEDataFields(t *testing.T) {
	r, root := newIPXE(t)
	tmpl := "#!ipxe\n{{.Node.Name}}|{{.MAC}}|{{.Server.Address}}|{{.Server.Port}}|{{.Server.URL}}|{{.Server.Secure}}|" +
		"{{join .ServerURLs \",\"}}|{{.KernelURL}}|{{.ImageURL}}|{{.SystemOverlayURL}}|{{.RuntimeOverlayURL}}|" +
		"{{.FetchRuntime}}|{{.KernelArgs}}|{{.BootArgs}}|{{join .Initrds \",\"}}|{{.Retries}}|" +
		"{{range .Fetches}}{{.Label}} {{.Command}} {{.Name}} {{.URL}} {{.What}} {{join .Fallbacks \",\"}};{{end}}\n"
	writeFile(t, filepath.Join(root, "ipxe", "custom.ipxe"), tmpl)
	snap := snapshot(t, true)
	script, sent, err := r.Script(Request{Snap: snap, Node: snap.Nodes.ByMAC[macN003], MAC: macN003, Servers: []string{self, "10.0.2.2:9873"}})
	if err != nil || sent != "custom" {
		t.Fatalf("sent %q, err %v", sent, err)
	}
	u, u2 := "http://10.0.2.1:9873", "http://10.0.2.2:9873"
	m := macN003
	want := "#!ipxe\nn003|" + m + "|10.0.2.1|9873|" + u + "|true|" + u + "," + u2 + "|" +
		u + "/kernel/" + m + "|" + u + "/image/" + m + "|" + u + "/overlay/system/" + m + "|" + u + "/overlay/runtime/" + m + "|" +
		"false|console=ttyS0 quiet|wwid=" + m + " wwserver=10.0.2.1:9873,10.0.2.2:9873 wwroot=initramfs console=ttyS0 quiet|" +
		"image.img.gz,system.img.gz|5|" +
		"kernel kernel kernel " + u + "/kernel/" + m + " kernel " + u2 + "/kernel/" + m + ";" +
		"image initrd image.img.gz " + u + "/image/" + m + " image " + u2 + "/image/" + m + ";" +
		"system initrd system.img.gz " + u + "/overlay/system/" + m + " system overlay " + u2 + "/overlay/system/" + m + ";\n"
	if string(script) != want {
		t.Errorf("got\n%s\nwant\n%s", script, want)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOverrides: ROOT/ipxe/NAME.ipxe is parsed once per change of the
// file; a missing one wraps ErrNoTemplate; a broken one is an error that
// names it.
func TestOverrides(t *testing.T) {
	r, root := newIPXE(t)
	path := filepath.Join(root, "ipxe", "custom.ipxe")
	if _, err := r.overrides.lookup("custom"); !errors.Is(err, ErrNoTemplate) || !strings.Contains(err.Error(), path) {
		t.Errorf("missing template: %v", err)
	}
	writeFile(t, path, "#!ipxe\nchain {{.KernelURL}}\n")
	t1, err := r.overrides.lookup("custom")
	if err != nil {
		t.Fatal(err)
	}
	t2, _ := r.overrides.lookup("custom")
	if t1 != t2 {
		t.Error("template reparsed although the file did not change")
	}
	// Edited (same size): reparsed.
	writeFile(t, path, "#!ipxe\nCHAIN {{.KernelURL}}\n")
	future := time.Now().Add(time.Second)
	_ = os.Chtimes(path, future, future)
	if t3, err := r.overrides.lookup("custom"); err != nil || t3 == t1 {
		t.Errorf("edited template not reparsed (err %v)", err)
	}
	writeFile(t, path, "#!ipxe\n{{.Nope")
	if _, err := r.overrides.lookup("custom"); err == nil || !strings.Contains(err.Error(), "custom.ipxe") {
		t.Errorf("broken template: %v", err)
	}
}

// TestNothingHalfWritten: a template failing while it executes writes
// nothing.
func TestNothingHalfWritten(t *testing.T) {
	r, root := newIPXE(t)
	writeFile(t, filepath.Join(root, "ipxe", "custom.ipxe"), "#!ipxe\n{{.Nope}}\n")
	snap := snapshot(t, true)
	n := snap.Nodes.ByMAC[macN003]
	var buf bytes.Buffer
	if _, err := r.RenderPlan(&buf, bootplan.New(snap.Server, n, macN003, nil)); err == nil || buf.Len() != 0 {
		t.Errorf("err %v, wrote %q", err, buf.String())
	}
	if script, _, err := r.Script(Request{Snap: snap, Node: n, MAC: macN003, Servers: []string{self}}); err == nil || script != nil {
		t.Errorf("Script: err %v, script %q", err, script)
	}
}

// TestScriptCache: one rendering per (snapshot, servers, template, node,
// MAC), shared; a new snapshot or server list renders again.
func TestScriptCache(t *testing.T) {
	r, _ := newIPXE(t)
	snap := snapshot(t, true)
	n := snap.Nodes.ByMAC[macN002]
	req := Request{Snap: snap, Node: n, MAC: macN002, Servers: []string{self}}
	a, _, _ := r.Script(req)
	b, _, _ := r.Script(req)
	if &a[0] != &b[0] {
		t.Error("same request rendered twice")
	}
	req.Servers = []string{self, "10.0.2.2:9873"}
	c, _, _ := r.Script(req)
	if &c[0] == &a[0] || !bytes.Contains(c, []byte("10.0.2.2")) {
		t.Error("new server list served the cached script")
	}
	snap2 := snapshot(t, true)
	req = Request{Snap: snap2, Node: snap2.Nodes.ByMAC[macN002], MAC: macN002, Servers: []string{self}}
	d, _, _ := r.Script(req)
	if &d[0] == &a[0] || !bytes.Equal(d, a) {
		t.Error("new snapshot: cached script served, or a different one rendered")
	}
}
