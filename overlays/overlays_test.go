package overlays

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/netrender"
	"github.com/wwcluster/ww/wwclient/nodeconf"
)

// Mirrors of the server's template data (DESIGN.md "Overlay templates"):
// the overlays must render with exactly these fields and functions.
type netDev struct {
	Name, HWAddr, IPAddr, Netmask, Gateway string
	Primary                                bool
}

type node struct {
	Name                                        string
	Profiles                                    []string
	Image, Kernel                               string
	KernelArgs, SystemOverlays, RuntimeOverlays []string
	Root, AssetKey, IPXETemplate                string
	Tags                                        map[string]string
	Network                                     []netDev
}

func (n *node) Primary() netDev {
	if len(n.Network) == 0 {
		return netDev{}
	}
	return n.Network[0]
}

type server struct {
	Address        string
	Port           int
	UpdateInterval int
	Secure         bool
	TLSPort        int // a method on the server's config.Server
}

type data struct {
	Node   *node
	Nodes  []*node
	Server server
	image  map[string]string
}

// ImageFile mirrors the server's: a file of the node's image ("" if none).
func (d data) ImageFile(name string) (string, error) { return d.image[name], nil }

var funcs = template.FuncMap{
	"join":  func(l []string, sep string) string { return strings.Join(l, sep) },
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"prefixlen": func(mask string) (int, error) {
		return nodeconf.PrefixLen(mask)
	},
	// Stand-ins with the server's signatures: this package checks that the
	// templates fit the data; server/artifact tests the account merge itself
	// on these templates (TestRuntimeOverlayAccountsFromImage).
	"mergelines":  func(base string, extra ...string) string { return base + strings.Join(extra, "") },
	"lockmissing": func(accounts, shadow string) string { return shadow },
	// server/netrender renders the network files (tested there and in
	// server/artifact); here as for an image with ifupdown.
	"netfiles": func(kind string, d data) ([]netrender.File, error) {
		n := &config.Node{Name: d.Node.Name}
		for _, x := range d.Node.Network {
			n.Network = append(n.Network, config.NetDev{Name: x.Name, HWAddr: x.HWAddr, IPAddr: x.IPAddr,
				Netmask: x.Netmask, Gateway: x.Gateway, Primary: x.Primary,
				NetDevExtra: config.NetDevExtra{Type: config.NetEthernet, OnBoot: true}})
		}
		return netrender.Files(kind, config.StackIfupdown, n)
	},
	"file": func(name string) string { return "\n=== file " + name + "\n" },
	// server/hostkeys (tested there and in server/artifact)
	"hostkeys": func(kind string, d data) ([]struct{ Name, Content string }, error) { return nil, nil },
}

// KnownHosts and ClusterRootKey mirror the server's (server/artifact/hostkeys.go).
func (d data) KnownHosts() (string, error)     { return "", nil }
func (d data) ClusterRootKey() (string, error) { return "", nil }

func render(t *testing.T, p string, d data) string {
	t.Helper()
	src, err := FS.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := template.New(p).Funcs(funcs).Option("missingkey=error").Parse(string(src))
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	var out bytes.Buffer
	if err := tpl.Execute(&out, d); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return out.String()
}

func testData() data {
	n1 := &node{Name: "n001", Root: "tmpfs", AssetKey: "", Network: []netDev{
		{Name: "eth0", HWAddr: "52:54:00:00:00:01", IPAddr: "10.0.2.11", Netmask: "255.255.255.0", Primary: true},
		{Name: "ib0", HWAddr: "52:54:00:00:01:01", IPAddr: "10.1.0.11", Netmask: "255.255.0.0"},
	}}
	n2 := &node{Name: "n002", Root: "initramfs", AssetKey: `k"ey`, Tags: map[string]string{
		"ssh_authorized_keys": "ssh-ed25519 AAAA one@x\nssh-ed25519 BBBB two@y",
		"passwd_extra":        "alice:x:1001:1001:Alice:/home/alice:/bin/sh",
		"group_extra":         "alice:x:1001:",
	}, Network: []netDev{{Name: "eth0", HWAddr: "52:54:00:00:00:02", IPAddr: "10.0.2.12", Netmask: "255.255.255.0", Gateway: "10.0.2.1", Primary: true}}}
	n3 := &node{Name: "n003", Network: []netDev{{Name: "eth0", HWAddr: "52:54:00:00:00:03", Primary: true}}} // no address
	return data{Node: n1, Nodes: []*node{n1, n2, n3}, Server: server{Address: "10.0.2.1", Port: 9873, UpdateInterval: 60, Secure: true}}
}

func TestWWClientTomlMatchesDesign(t *testing.T) {
	d := testData()
	got := render(t, "wwinit/etc/wwclient/wwclient.toml.ww", d)
	want := `# wwclient configuration for n001, rendered by wwserver (wwinit overlay)
node = "n001"
server = "10.0.2.1:9873"
update_interval = 60          # seconds
secure = true
# wwserver.toml [tls]: heartbeats and the runtime overlay over HTTPS at this
# port (0: plain HTTP), trusting only the CA in /etc/wwclient/tls-ca.pem.
tls_port = 0
# The asset key is never written here (this overlay is served to anyone who
# asks for the MAC): wwclient reads it from the SMBIOS chassis asset tag.
asset_key = ""
root = "tmpfs"
[[network]]
name = "eth0"
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.0.2.11"
netmask = "255.255.255.0"
gateway = ""
primary = true
[[network]]
name = "ib0"
hwaddr = "52:54:00:00:01:01"
ipaddr = "10.1.0.11"
netmask = "255.255.0.0"
gateway = ""
primary = false
`
	if got != want {
		t.Fatalf("rendered:\n%s\nwant:\n%s", got, want)
	}
	// and wwclient reads it back
	cfg, err := nodeconf.Parse([]byte(got))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := cfg.Primary()
	if cfg.Node != "n001" || cfg.Server != "10.0.2.1:9873" || !cfg.Secure || p.IPAddr != "10.0.2.11" || len(cfg.Network) != 2 {
		t.Fatalf("%+v", cfg)
	}
	// quoting survives odd values
	d.Node = d.Nodes[1]
	cfg, err = nodeconf.Parse([]byte(render(t, "wwinit/etc/wwclient/wwclient.toml.ww", d)))
	// the asset key never appears in the served system overlay
	if err != nil || cfg.AssetKey != "" || cfg.Root != "initramfs" {
		t.Fatalf("%+v %v", cfg, err)
	}
}

func TestSystemOverlayFiles(t *testing.T) {
	d := testData()
	if got := render(t, "wwinit/etc/hostname.ww", d); got != "n001\n" {
		t.Fatalf("hostname %q", got)
	}
	hosts := render(t, "wwinit/etc/hosts.ww", d)
	for _, l := range []string{"127.0.0.1\tlocalhost\n", "10.0.2.11\tn001\n", "10.0.2.1\twwserver\n"} {
		if !strings.Contains(hosts, l) {
			t.Errorf("hosts lacks %q:\n%s", l, hosts)
		}
	}
	ifaces := render(t, "wwinit/etc/network/interfaces.ww", d)
	for _, l := range []string{"auto eth0\niface eth0 inet static\n\taddress 10.0.2.11\n\tnetmask 255.255.255.0\n", "auto ib0\niface ib0 inet static\n"} {
		if !strings.Contains(ifaces, l) {
			t.Errorf("interfaces lacks %q:\n%s", l, ifaces)
		}
	}
	d.Node = d.Nodes[1]
	if ifaces := render(t, "wwinit/etc/network/interfaces.ww", d); !strings.Contains(ifaces, "\tgateway 10.0.2.1\n") {
		t.Errorf("gateway missing:\n%s", ifaces)
	}
	d.Node = d.Nodes[2]
	if ifaces := render(t, "wwinit/etc/network/interfaces.ww", d); !strings.Contains(ifaces, "iface eth0 inet dhcp\n") {
		t.Errorf("dhcp fallback missing:\n%s", ifaces)
	}
	unit, err := FS.ReadFile("wwinit/etc/systemd/system/wwclient.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"Type=notify\n", "ExecStart=/usr/sbin/wwclient\n", "Restart=always\n", "WantedBy=multi-user.target\n"} {
		if !bytes.Contains(unit, []byte(l)) {
			t.Errorf("unit lacks %q", l)
		}
	}
}

func TestRuntimeOverlayFiles(t *testing.T) {
	d := testData()
	hosts := render(t, "generic/etc/hosts.ww", d)
	want := "# all nodes, rendered by wwserver (generic runtime overlay)\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.2.1\twwserver\n10.0.2.11\tn001\n10.0.2.12\tn002\n"
	if hosts != want {
		t.Fatalf("hosts:\n%q\nwant\n%q", hosts, want)
	}
	// account files: the image's, then the node's passwd_extra/group_extra
	d.image = map[string]string{"etc/passwd": "root:x:0:0:root:/root:/bin/bash\n", "etc/group": "root:x:0:\n"}
	if passwd := render(t, "generic/etc/passwd.ww", d); passwd != "root:x:0:0:root:/root:/bin/bash\n" {
		t.Fatalf("passwd without tags: %q", passwd)
	}
	if keys := render(t, "generic/root/.ssh/authorized_keys.ww", d); keys != "" {
		t.Fatalf("keys %q", keys)
	}
	// with tags
	d.Node = d.Nodes[1]
	if passwd := render(t, "generic/etc/passwd.ww", d); passwd != "root:x:0:0:root:/root:/bin/bash\nalice:x:1001:1001:Alice:/home/alice:/bin/sh" {
		t.Fatalf("passwd with passwd_extra: %q", passwd)
	}
	if group := render(t, "generic/etc/group.ww", d); group != "root:x:0:\nalice:x:1001:" {
		t.Fatalf("group with group_extra: %q", group)
	}
	if keys := render(t, "generic/root/.ssh/authorized_keys.ww", d); keys != "ssh-ed25519 AAAA one@x\nssh-ed25519 BBBB two@y\n" {
		t.Fatalf("keys %q", keys)
	}
}

func TestEveryTemplateParses(t *testing.T) {
	n := 0
	fs.WalkDir(FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(p, ".ww") {
			n++
			render(t, p, testData())
		}
		return nil
	})
	if n < 8 {
		t.Fatalf("only %d templates found", n)
	}
}

func TestTablesMatchFS(t *testing.T) {
	for p := range Modes {
		if p == "wwinit/"+ClientBinary {
			continue // not in git
		}
		if _, err := fs.Stat(FS, p); err != nil {
			t.Errorf("Modes names %s: %v", p, err)
		}
	}
	for p, target := range Symlinks {
		if _, err := fs.Stat(FS, p); err == nil {
			t.Errorf("symlink %s is also a file in FS", p)
		}
		if target == "" {
			t.Errorf("symlink %s has no target", p)
		}
		found := false
		for _, n := range Names() {
			found = found || strings.HasPrefix(p, n+"/")
		}
		if !found {
			t.Errorf("symlink %s outside the overlays", p)
		}
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	if err := WriteAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := WriteAll(dir); err != nil { // again: overwrites
		t.Fatalf("second write: %v", err)
	}
	mode := func(p string) fs.FileMode {
		fi, err := os.Lstat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode()
	}
	checks := map[string]fs.FileMode{
		"wwinit/etc/wwclient/wwclient.toml.ww": 0o600,
		"wwinit/etc/hostname.ww":               0o644,
		"wwinit/etc":                           fs.ModeDir | 0o755,
		"generic/root":                         fs.ModeDir | 0o700,
		"generic/root/.ssh":                    fs.ModeDir | 0o700,
		"generic/root/.ssh/authorized_keys.ww": 0o600,
	}
	for p, want := range checks {
		if got := mode(p); got != want {
			t.Errorf("%s: mode %v want %v", p, got, want)
		}
	}
	for p, target := range Symlinks {
		got, err := os.Readlink(filepath.Join(dir, p))
		if err != nil || got != target {
			t.Errorf("%s -> %q (%v), want %q", p, got, err, target)
		}
	}
	if l, _ := os.Readlink(filepath.Join(dir, "wwinit/init")); l != "usr/sbin/wwclient" {
		t.Fatalf("init -> %q", l)
	}
	if err := Write(dir, "nope"); err == nil {
		t.Fatal("unknown overlay")
	}
}
