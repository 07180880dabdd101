package artifact

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/wwcluster/ww/overlays"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/wwclient/nodeconf"
)

// otherKey is the asset key of the second node: no overlay of the fuzzed
// node may carry it.
const otherKey = "OTHER-NODE-KEY-5c1d"

// hostileNodes writes nodes.toml through a TOML encoder, so every fuzzed
// string arrives as a value (or key) exactly as given, whatever it holds.
func hostileNodes(devName, kernelArg, tagKey, tagValue, assetKey, ipaddr string) ([]byte, error) {
	doc := map[string]any{"nodes": map[string]any{
		"n001": map[string]any{
			"image": "debian", "kernel_args": []string{kernelArg},
			"system_overlays": []string{"wwinit"}, "runtime_overlays": []string{"generic"},
			"asset_key": assetKey, "tags": map[string]string{tagKey: tagValue},
			"network": map[string]any{devName: map[string]string{"hwaddr": "52:54:00:00:00:01", "ipaddr": ipaddr}},
		},
		"n002": map[string]any{
			"image": "debian", "system_overlays": []string{"wwinit"}, "runtime_overlays": []string{"generic"},
			"asset_key": otherKey,
			"network":   map[string]any{"eth0": map[string]string{"hwaddr": "52:54:00:00:00:02", "ipaddr": "10.0.2.12"}},
		},
	}}
	var buf bytes.Buffer
	err := toml.NewEncoder(&buf).Encode(doc)
	return buf.Bytes(), err
}

// FuzzRenderHostileNodes renders the shipped overlays (wwinit, generic)
// for a node whose nodes.toml values are fuzzed. A value nodes.toml
// accepts must never: panic or break the build, add, drop or rename a
// file, put another node's asset key into this node's overlays, or
// change what wwclient reads from its configuration (node, root,
// network) or what /etc/hostname and /etc/network/interfaces say.
func FuzzRenderHostileNodes(f *testing.F) {
	f.Add("eth0", "console=ttyS0", "rack", "r1", "key1", "10.0.2.11")
	f.Add("eth0\nauto evil\niface evil inet manual\n\tup touch /pwned", "x", "passwd_extra", "evil:x:0:0::/:/bin/sh", "", "")
	f.Add(`eth0" ]] evil = "1`, "{{.Node.AssetKey}}", "ssh_authorized_keys", "ssh-ed25519 AAAA x", `k"ey`, "10.0.2.11")
	f.Add("eth\x07", "quiet\n", "root_shell", "/bin/bash\nroot2::0:0::/:/bin/sh", "\x00", "10.0.2.12")
	f.Add("", "", "", "", "", "")
	f.Add(strings.Repeat("e", 300), strings.Repeat("{", 100), "group_extra", strings.Repeat("g", 5000), "key", "010.0.2.11")

	tt := newTree(f) // the shipped overlays only
	for _, name := range overlays.Names() {
		if err := overlays.Write(filepath.Join(tt.root, "overlays", name), name); err != nil {
			f.Fatal(err)
		}
	}
	srv, err := config.ParseServer("wwserver.toml", []byte(testServerTOML))
	if err != nil {
		f.Fatal(err)
	}
	b, _ := newBuilder(f, tt.root)
	// The reference: file names of both overlays for a plain node.
	ref := map[string][]string{}
	{
		data, err := hostileNodes("eth0", "quiet", "rack", "r1", "k", "10.0.2.11")
		if err != nil {
			f.Fatal(err)
		}
		nodes, err := config.ParseNodes("nodes.toml", data)
		if err != nil {
			f.Fatal(err)
		}
		snap := &config.Snapshot{Server: srv, Nodes: nodes, Gen: 1}
		for kind, build := range map[string]func(*config.Snapshot, *config.Node) (*Artifact, error){
			"system":  func(s *config.Snapshot, n *config.Node) (*Artifact, error) { return b.SystemOverlay(bg, s, n) },
			"runtime": func(s *config.Snapshot, n *config.Node) (*Artifact, error) { return b.RuntimeOverlay(bg, s, n) },
		} {
			a, err := build(snap, nodes.ByName["n001"])
			if err != nil {
				f.Fatal(err)
			}
			ref[kind] = archiveNames(f, a)
		}
	}

	gen := uint64(1)
	f.Fuzz(func(t *testing.T, devName, kernelArg, tagKey, tagValue, assetKey, ipaddr string) {
		data, err := hostileNodes(devName, kernelArg, tagKey, tagValue, assetKey, ipaddr)
		if err != nil {
			return // not expressible in TOML
		}
		nodes, err := config.ParseNodes("nodes.toml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "nodes.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		gen++
		snap := &config.Snapshot{Server: srv, Nodes: nodes, Gen: gen}
		n := nodes.ByName["n001"]

		sys, err := b.SystemOverlay(bg, snap, n)
		if err != nil {
			t.Fatalf("system overlay of an accepted node: %v", err)
		}
		rt, err := b.RuntimeOverlay(bg, snap, n)
		if err != nil {
			t.Fatalf("runtime overlay of an accepted node: %v", err)
		}
		for kind, a := range map[string]*Artifact{"system": sys, "runtime": rt} {
			if got := archiveNames(t, a); strings.Join(got, " ") != strings.Join(ref[kind], " ") {
				t.Fatalf("%s overlay files %v, want %v", kind, got, ref[kind])
			}
			for name, fl := range unpack(t, a) {
				if strings.Contains(fl.data, otherKey) {
					t.Fatalf("%s overlay %s carries another node's asset key", kind, name)
				}
			}
		}
		files := unpack(t, sys)

		if got := files["etc/hostname"].data; got != "n001\n" {
			t.Errorf("etc/hostname = %q", got)
		}
		cfg, err := nodeconf.Parse([]byte(files["etc/wwclient/wwclient.toml"].data))
		if err != nil {
			t.Fatalf("wwclient.toml does not parse: %v\n%s", err, files["etc/wwclient/wwclient.toml"].data)
		}
		if cfg.Node != "n001" || cfg.Root != n.Root || cfg.AssetKey != "" || len(cfg.Network) != len(n.Network) {
			t.Fatalf("wwclient.toml says node %q root %q key %q, %d devices; want n001 %q \"\" %d",
				cfg.Node, cfg.Root, cfg.AssetKey, len(cfg.Network), n.Root, len(n.Network))
		}
		for i, d := range n.Network {
			c := cfg.Network[i]
			if c.Name != d.Name || c.HWAddr != d.HWAddr || c.IPAddr != d.IPAddr || c.Primary != d.Primary {
				t.Fatalf("wwclient.toml device %d = %+v, want %+v", i, c, d)
			}
		}
		// /etc/network/interfaces: exactly one auto and one iface stanza
		// per device (and lo), nothing else but comments and options.
		var autos, ifaces int
		for _, line := range strings.Split(files["etc/network/interfaces"].data, "\n") {
			switch fields := strings.Fields(line); {
			case len(fields) == 0 || strings.HasPrefix(line, "#"):
			case fields[0] == "auto":
				autos++
			case fields[0] == "iface":
				ifaces++
			case strings.HasPrefix(line, "\t") && len(fields) == 2 &&
				(fields[0] == "address" || fields[0] == "netmask" || fields[0] == "gateway"):
			default:
				t.Fatalf("etc/network/interfaces: unexpected line %q", line)
			}
		}
		if autos != len(n.Network)+1 || ifaces != len(n.Network)+1 {
			t.Fatalf("etc/network/interfaces: %d auto, %d iface lines for %d devices", autos, ifaces, len(n.Network))
		}
	})
}

// archiveNames lists an overlay's entry names, checking each is confined.
func archiveNames(t testing.TB, a *Artifact) []string {
	t.Helper()
	var all []byte
	for _, m := range members(t, readAll(t, a)) {
		all = append(all, m...)
	}
	_, order := listArchives(t, all)
	for _, name := range order {
		if strings.HasPrefix(name, "/") || strings.Contains("/"+name+"/", "/../") {
			t.Fatalf("entry %q escapes the root", name)
		}
	}
	return order
}
