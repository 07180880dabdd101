package config

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// decodeTOML is the reference: the TOML decoder, and no undecoded keys.
func decodeTOML(data []byte) (*File, bool) {
	var f File
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&f)
	if err != nil || len(md.Undecoded()) > 0 {
		return nil, false
	}
	return &f, true
}

// checkFast: when the fast parser accepts data, the TOML decoder accepts it
// too and decodes the same File.
func checkFast(t *testing.T, data []byte) (accepted bool) {
	t.Helper()
	got, ok := fastParseNodes(data)
	if !ok {
		return false
	}
	want, ok := decodeTOML(data)
	if !ok {
		t.Fatalf("fast parser accepted what TOML refuses:\n%s", data)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fast parser and TOML differ on:\n%s\nfast: %s\ntoml: %s", data, dumpFile(got), dumpFile(want))
	}
	return true
}

func dumpFile(f *File) string {
	var b strings.Builder
	dump := func(kind string, m map[string]*Entry) {
		if m == nil {
			fmt.Fprintf(&b, "%s=nil ", kind)
		}
		for k, e := range m {
			fmt.Fprintf(&b, "%s[%q]=%+v ", kind, k, *e)
			for d, n := range e.Network {
				fmt.Fprintf(&b, "dev %q=%+v ", d, n)
			}
		}
	}
	dump("profiles", f.Profiles)
	dump("nodes", f.Nodes)
	return b.String()
}

func TestFastParseAgreesWithTOML(t *testing.T) {
	for _, c := range []struct {
		data   string
		accept bool
	}{
		{managedText(3), true},
		{goodNodes, true},
		{"", true},
		{"[nodes]\n", true},
		{"# only a comment\n\n", true},
		{"[profiles.default]\nimage = \"debian\"   # trailing comment\nkernel_args = [\"a=1\", 'b\\c',]\n", true},
		{"[nodes.\"a.b\"]\nimage = 'x'\n[nodes.\"a.b\".tags]\n\"key with space\" = \"v\"\n", true},
		{"[nodes.n1]\r\nimage = \"x\"\r\ndiscoverable = true\r\nprofiles = []\r\n", true},
		{"[nodes.n1.network.eth0]\nprimary = false\n[nodes.n1]\nimage = \"x\"\n", true},
		{"[nodes.n1.tags]\n[nodes.n1.network]\n[nodes.n1.network.eth0]\n", true},
		// Refused: TOML errors, escapes, forms it does not read.
		{"[nodes.n1]\nimage = \"x\"\nimage = \"y\"\n", false},
		{"[nodes.n1]\n[nodes.n1]\n", false},
		{"[nodes.n1]\nimage = \"a\\tb\"\n", false},
		{"[nodes.n1]\nkernel_args = [\n\"a\"]\n", false},
		{"[nodes.n1]\ntags = { a = \"b\" }\n", false},
		{"[nodes.n1]\nnetwork.eth0.hwaddr = \"x\"\n", false},
		{"[nodes.n1]\nshoe = \"9\"\n", false},
		{"[[nodes]]\n", false},
		{"[ nodes.n1 ]\n", false},
		{"[nodes.n1]\nimage = \"x\" y\n", false},
		{"[nodes.n1]\nimage = 3\n", false},
		{"[nodes.n1]\nimage = \"\"\"x\"\"\"\n", false},
		{"image = \"x\"\n", false},
		{"[nodes.n1]\nimage = \"x\x7f\"\n", false},
		{"\xef\xbb\xbf[nodes.n1]\n", false},
		{"[nodes.n1]\nimage = \"\xff\"\n", false},
		{"[other]\na = \"b\"\n", false},
	} {
		if got := checkFast(t, []byte(c.data)); got != c.accept {
			t.Errorf("fast parser accepted=%v, want %v, for:\n%s", got, c.accept, c.data)
		}
	}
}

// TestFastParseRandom: random files from the pieces people and wwserver
// write; whatever the fast parser accepts, the TOML decoder reads the same.
func TestFastParseRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pieces := []string{
		"[nodes]", "[profiles]", "[nodes.n1]", "[nodes.n2]", "[profiles.p]", "[nodes.n1.tags]", "[nodes.n1.network]",
		"[nodes.n1.network.eth0]", "[nodes.n2.network.eth1]", `[nodes."x.y"]`, "# comment", "", "  ",
		`image = "debian"`, `image = 'lit\eral'`, `kernel = "boot/vmlinuz"`, `root = "tmpfs"`, `asset_key = "k"`,
		`ipxe_template = "t"`, `profiles = ["p"]`, `profiles = []`, `kernel_args = ["a", "b" ,]`,
		`system_overlays = ['w']`, `runtime_overlays = ["g"] # c`, `discoverable = true`, `discoverable = false`,
		`hwaddr = "52:54:00:00:00:01"`, `ipaddr = "10.0.0.1"`, `netmask = "255.255.255.0"`, `gateway = ""`,
		`primary = true`, `rack = "r1"`, `"odd key" = "v"`, `image = "a\"b"`, `image = 1`, `x = "y"`,
		`image="nospace"`, "\timage = \"tab\"", `network_drivers = ["virtio-net", "e1000e"]`,
	}
	accepted := 0
	for range 20000 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteString(pieces[r.IntN(len(pieces))])
			b.WriteByte('\n')
		}
		if checkFast(t, []byte(b.String())) {
			accepted++
		}
	}
	if accepted < 1000 {
		t.Errorf("only %d of 20000 random files took the fast path: the test tests little", accepted)
	}
}

func FuzzFastParse(f *testing.F) {
	f.Add([]byte(managedText(2)))
	f.Add([]byte(goodNodes))
	f.Add([]byte("[nodes.\"a.b\".tags]\n\"k\" = 'v' # c\n"))
	f.Add([]byte(bmcNodes))
	f.Add([]byte("[nodes.a.bmc]\ncipher_suite = 03\n"))
	f.Add([]byte("[nodes.a.bmc]\ncipher_suite = 1_7 # x\ninsecure = false\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFast(t, data)
	})
}
