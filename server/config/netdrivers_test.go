package config

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

const driversNodes = `[profiles.p]
image = "img"
network_drivers = ["virtio-net", "e1000e"]

[nodes.n1]
profiles = ["p"]
[nodes.n1.network.eth0]
hwaddr = "52:54:00:00:00:01"

[nodes.n2]
profiles = ["p"]
network_drivers = ["mlx5_core"]
[nodes.n2.network.eth0]
hwaddr = "52:54:00:00:00:02"

[nodes.n3]
profiles = ["p"]
network_drivers = []
[nodes.n3.network.eth0]
hwaddr = "52:54:00:00:00:03"
`

// TestNetworkDriversMerge: a profile's list is inherited, a node's own
// replaces it (an empty one too: every driver again); the fast parser and
// the TOML decoder read it alike; it is written back as it was.
func TestNetworkDriversMerge(t *testing.T) {
	if !checkFast(t, []byte(driversNodes)) {
		t.Fatal("fast parser refused network_drivers")
	}
	ns, err := ParseNodes("nodes.toml", []byte(driversNodes))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{"n1": {"virtio-net", "e1000e"}, "n2": {"mlx5_core"}, "n3": {}} {
		if got := ns.ByName[name].NetworkDrivers; len(got) != len(want) || len(want) > 0 && !reflect.DeepEqual(got, want) {
			t.Errorf("%s: network_drivers %q, want %q", name, got, want)
		}
	}
	if got := ns.Public[0].NetworkDrivers; !reflect.DeepEqual(got, []string{"virtio-net", "e1000e"}) {
		t.Errorf("public n1: %q", got)
	}
	f, ok := decodeTOML([]byte(driversNodes))
	if !ok {
		t.Fatal("TOML decoder refused it")
	}
	var buf bytes.Buffer
	if err := WriteNodesFile(&buf, f); err != nil {
		t.Fatal(err)
	}
	back, ok := decodeTOML(buf.Bytes())
	if !ok {
		t.Fatalf("written file does not decode:\n%s", buf.String())
	}
	for _, name := range []string{"n1", "n2", "n3"} {
		if !SameEntry(f.Nodes[name], back.Nodes[name]) {
			t.Errorf("%s changed when written:\n%s", name, buf.String())
		}
	}
	if !SameEntry(f.Profiles["p"], back.Profiles["p"]) || !strings.Contains(buf.String(), `network_drivers = ["virtio-net", "e1000e"]`) {
		t.Errorf("profile changed when written:\n%s", buf.String())
	}
	changed := *f.Nodes["n2"]
	changed.NetworkDrivers = []string{"mlx4_en"}
	if SameEntry(f.Nodes["n2"], &changed) {
		t.Error("SameEntry ignores network_drivers")
	}
}

// TestNetworkDriversRefused: a name that is not a module name, or too many
// of them, is an error with file, line and key, on a node or a profile.
func TestNetworkDriversRefused(t *testing.T) {
	many := strings.Repeat(`"e1000", `, MaxNetworkDrivers) + `"igb"`
	for _, c := range []struct{ list, want string }{
		{`["../../etc/passwd"]`, `holds '.'`},
		{`["virtio net"]`, `holds ' '`},
		{`[""]`, "must be 1-55 characters"},
		{`["` + strings.Repeat("a", MaxModuleName+1) + `"]`, "must be 1-55 characters"},
		{`["e1000e", "mlx5_core\n"]`, `holds '\n'`},
		{"[" + many + "]", "65 modules; at most 64"},
	} {
		for _, where := range []string{"profiles.p", "nodes.n1"} {
			var b strings.Builder
			b.WriteString("[profiles.p]\nimage = \"img\"\n")
			if where == "profiles.p" {
				b.WriteString("network_drivers = " + c.list + "\n")
			}
			b.WriteString("[nodes.n1]\nprofiles = [\"p\"]\n")
			if where == "nodes.n1" {
				b.WriteString("network_drivers = " + c.list + "\n")
			}
			b.WriteString("[nodes.n1.network.eth0]\nhwaddr = \"52:54:00:00:00:01\"\n")
			_, err := ParseNodes("nodes.toml", []byte(b.String()))
			line := "3"
			if where == "nodes.n1" {
				line = "5"
			}
			prefix := "nodes.toml:" + line + ": " + where + ".network_drivers: "
			if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s network_drivers = %s: error %v, want %q… with %q", where, c.list, err, prefix, c.want)
			}
		}
	}
}

func TestNetworkDriverSet(t *testing.T) {
	got := NetworkDriverSet([]string{"mlx5_core", "virtio-net", "e1000e", "virtio_net", "igb"})
	if want := []string{"e1000e", "igb", "mlx5_core", "virtio_net"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("%q, want %q", got, want)
	}
	if got := NetworkDriverSet(nil); len(got) != 0 {
		t.Fatalf("%q", got)
	}
}
