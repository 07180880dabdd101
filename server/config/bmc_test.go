package config

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

const bmcNodes = `[profiles.rack1]
image = "img"
[profiles.rack1.bmc]
username = "admin"
password = "s3cret-profile"
interface = "lanplus"

[nodes.n001]
profiles = ["rack1"]
[nodes.n001.bmc]
address = "10.1.0.1"

[nodes.n002]
profiles = ["rack1"]
[nodes.n002.bmc]
address = "10.1.0.2:6230"
password_file = "/etc/wwserver/bmc.pass"
cipher_suite = 17

[nodes.n003]
image = "img"
[nodes.n003.bmc]
address = "https://bmc3.example"
interface = "redfish"
username = "root"
password = "s3cret-n003"
insecure = true

[nodes.n004]
image = "img"
`

// TestBMCResolve: bmc tables merge per field (node over profile, a password
// file replacing the profile's password), defaults (lanplus, cipher suite
// 3) apply, and the password is only reachable through Nodes.BMCPassword:
// not in Node, PublicNode or their JSON.
func TestBMCResolve(t *testing.T) {
	ns, err := ParseNodes("nodes.toml", []byte(bmcNodes))
	if err != nil {
		t.Fatal(err)
	}
	n1, n2, n3 := ns.ByName["n001"].BMC, ns.ByName["n002"].BMC, ns.ByName["n003"].BMC
	if want := (BMC{Address: "10.1.0.1", Username: "admin", Password: RedactedPassword, Interface: BMCLanplus, CipherSuite: 3}); n1 == nil || *n1 != want {
		t.Errorf("n001 bmc = %+v, want %+v", n1, want)
	}
	if want := (BMC{Address: "10.1.0.2:6230", Username: "admin", PasswordFile: "/etc/wwserver/bmc.pass", Interface: BMCLanplus, CipherSuite: 17}); n2 == nil || *n2 != want {
		t.Errorf("n002 bmc = %+v, want %+v", n2, want)
	}
	if want := (BMC{Address: "https://bmc3.example", Username: "root", Password: RedactedPassword, Interface: BMCRedfish, Insecure: true}); n3 == nil || *n3 != want {
		t.Errorf("n003 bmc = %+v, want %+v", n3, want)
	}
	if ns.ByName["n004"].BMC != nil {
		t.Errorf("n004 has no bmc table but got %+v", ns.ByName["n004"].BMC)
	}
	for name, want := range map[string]string{"n001": "s3cret-profile", "n002": "", "n003": "s3cret-n003", "n004": ""} {
		if got := ns.BMCPassword(name); got != want {
			t.Errorf("BMCPassword(%s) = %q, want %q", name, got, want)
		}
	}
	out, err := json.Marshal(struct {
		L []*Node
		P []*PublicNode
	}{ns.List, ns.Public})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("s3cret")) {
		t.Fatalf("node JSON holds a BMC password: %s", out)
	}
	if !bytes.Contains(out, []byte(`"password":"(redacted)"`)) {
		t.Errorf("node JSON does not show the password as redacted: %s", out)
	}
}

// TestBMCErrors: bad bmc values are refused with file:line: key.
func TestBMCErrors(t *testing.T) {
	for _, c := range []struct{ table, want string }{
		{`interface = "ipmi"`, `nodes.toml:4: nodes.n1.bmc.interface: must be "lanplus" or "redfish", got "ipmi"`},
		{`address = "10.0.0.1:99999"`, `nodes.toml:4: nodes.n1.bmc.address: "10.0.0.1:99999": port "99999" is not 1-65535`},
		{`address = "ftp://x"`, `nodes.toml:4: nodes.n1.bmc.address: "ftp://x": only http:// and https://`},
		{`address = "https://x/redfish/v1"`, `nodes.toml:4: nodes.n1.bmc.address: "https://x/redfish/v1": give only scheme://host[:port]`},
		{"password = \"a\"\npassword_file = \"/p\"", `nodes.toml:5: nodes.n1.bmc.password_file: give password or password_file, not both`},
		{`cipher_suite = 42`, `nodes.toml:4: nodes.n1.bmc.cipher_suite: must be an IPMI 2.0 cipher suite, 0-17`},
		{`port = 623`, `nodes.toml:4: nodes.n1.bmc.port: unknown key`},
	} {
		src := "[nodes.n1]\nimage = \"img\"\n[nodes.n1.bmc]\n" + c.table + "\n"
		_, err := ParseNodes("nodes.toml", []byte(src))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %s…", c.table, err, c.want)
		}
	}
	for _, ok := range []string{"10.0.0.1", "bmc1", "bmc1:623", "[fe80::1]:623", "fe80::1", "https://bmc:8443", "http://127.0.0.1:8000/"} {
		if err := CheckBMCAddress(ok); err != nil {
			t.Errorf("CheckBMCAddress(%q): %v", ok, err)
		}
	}
}

// TestBMCEncodeRoundTrip: a bmc table written by WriteNodesFile (node
// edits under nodes.d) reads back the same.
func TestBMCEncodeRoundTrip(t *testing.T) {
	f, err := DecodeNodesFile(Source{Path: "nodes.toml", Data: []byte(bmcNodes)})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteNodesFile(&buf, f); err != nil {
		t.Fatal(err)
	}
	g, err := DecodeNodesFile(Source{Path: "again.toml", Data: buf.Bytes()})
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	for _, kind := range []map[string]*Entry{f.Nodes, f.Profiles} {
		for name, e := range kind {
			other := g.Nodes[name]
			if other == nil {
				other = g.Profiles[name]
			}
			if !SameEntry(e, other) {
				t.Errorf("%s changed in the round trip:\n%s", name, buf.String())
			}
		}
	}
	if !strings.Contains(buf.String(), "[nodes.n002.bmc]\naddress = \"10.1.0.2:6230\"\n") ||
		!strings.Contains(buf.String(), "cipher_suite = 17") {
		t.Errorf("bmc table not written:\n%s", buf.String())
	}
	e := *f.Nodes["n002"]
	changed := *e.BMC
	cs := 3
	changed.CipherSuite = &cs
	e.BMC = &changed
	if SameEntry(f.Nodes["n002"], &e) {
		t.Error("SameEntry ignores a changed cipher_suite")
	}
}

// TestBMCFastParse: the fast parser reads bmc tables as wwserver writes
// them (the TOML decoder would be ten times slower on a tree of
// thousands of nodes with BMCs), the same as the TOML decoder.
func TestBMCFastParse(t *testing.T) {
	if !checkFast(t, []byte(bmcNodes)) {
		t.Error("the fast parser left a plain bmc file to the TOML decoder")
	}
	for _, odd := range []string{"cipher_suite = 03", "cipher_suite = 1_7", "cipher_suite = +3", "cipher_suite = 0x3", "cipher_suite = 3.0", "port = 1"} {
		checkFast(t, []byte("[nodes.a.bmc]\n"+odd+"\n"))
	}
}

// TestEncodeKeepsBootKeys: WriteNodesFile (every node edit under nodes.d)
// keeps boot and bootloader; it used to drop them, so `node set --boot
// twostage` or any later edit of that file lost them silently.
func TestEncodeKeepsBootKeys(t *testing.T) {
	src := "[nodes.a]\nboot = \"twostage\"\nbootloader = \"grub\"\n"
	if !checkFast(t, []byte(src)) {
		t.Error("the fast parser left boot/bootloader to the TOML decoder")
	}
	f, err := DecodeNodesFile(Source{Path: "x", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteNodesFile(&b, f); err != nil {
		t.Fatal(err)
	}
	g, err := DecodeNodesFile(Source{Path: "y", Data: b.Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	if e := g.Nodes["a"]; e.Boot == nil || *e.Boot != "twostage" || e.Bootloader == nil || *e.Bootloader != "grub" {
		t.Fatalf("written as %q", b.String())
	}
	other := *g.Nodes["a"]
	other.Boot = nil
	if SameEntry(g.Nodes["a"], &other) {
		t.Error("SameEntry ignores boot")
	}
}
