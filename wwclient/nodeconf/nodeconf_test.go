package nodeconf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// designExample is the wwclient.toml example from DESIGN.md, verbatim.
const designExample = `node = "n001"
server = "10.0.2.1:9873"
update_interval = 60          # seconds
secure = true
asset_key = ""
root = "tmpfs"
[[network]]
name = "eth0"
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.0.2.11"
netmask = "255.255.255.0"
gateway = ""
primary = true
`

func TestParseDesignExample(t *testing.T) {
	c, err := Parse([]byte(designExample))
	if err != nil {
		t.Fatal(err)
	}
	if c.Node != "n001" || c.Server != "10.0.2.1:9873" || c.UpdateInterval != 60 || !c.Secure || c.AssetKey != "" || c.Root != "tmpfs" {
		t.Fatalf("unexpected config: %+v", c)
	}
	p, ok := c.Primary()
	if !ok || p.Name != "eth0" || p.HWAddr != "52:54:00:00:00:01" || p.IPAddr != "10.0.2.11" || p.Netmask != "255.255.255.0" || !p.Primary {
		t.Fatalf("unexpected primary: %+v ok=%v", p, ok)
	}
	if c.Interval() != 60*time.Second {
		t.Fatalf("interval %v", c.Interval())
	}
	if lo, hi := c.SourcePorts(); lo != 600 || hi != 1023 {
		t.Fatalf("ports %d-%d", lo, hi)
	}
	if !c.ConfigureNetwork() {
		t.Fatal("configure_network should default to true")
	}
}

func TestParseDefaultsAndNormalisation(t *testing.T) {
	c, err := Parse([]byte(`node = "n2"
[[network]]
name = "eth1"
hwaddr = "52-54-00-AA-BB-02"
[[network]]
name = "eth0"
hwaddr = "52:54:00:AA:BB:01"
primary = true
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Interval() != DefaultUpdateInterval {
		t.Fatalf("default interval: %v", c.Interval())
	}
	if c.RootMode() != RootTmpfs {
		t.Fatalf("default root: %q", c.RootMode())
	}
	if c.Network[0].HWAddr != "52:54:00:aa:bb:02" {
		t.Fatalf("MAC not normalised: %q", c.Network[0].HWAddr)
	}
	p, _ := c.Primary()
	if p.Name != "eth0" {
		t.Fatalf("primary should be the one marked primary, got %q", p.Name)
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]string{
		`node = "x"` + "\n" + `bogus = 1`:              "unknown key",
		`root = "nfs"`:                                 "root:",
		`update_interval = -5`:                         "update_interval",
		"[[network]]\nhwaddr = \"zz:zz\"":              "hwaddr",
		"[[network]]\nipaddr = \"10.0.2\"":             "ipaddr",
		"[[network]]\nnetmask = \"255.0.255.0\"":       "netmask",
		`server = "http://"`:                           "server",
		"source_port_min = 900\nsource_port_max = 700": "source_port_min",
		`node = `:                                                "parse",
		"source_port_max = 2000":                                 "1-1023",
		"[[network]]\ngateway = \"fe80::1\"":                     "gateway",
		"node = \"a\"\nupdate_interval = \"60s\"":                "parse",
		"[[network]]\nname = \"eth0\"\nhwaddr = \"52:54:00:00\"": "hwaddr",
	}
	for in, want := range cases {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q): err = %v, want containing %q", in, err, want)
		}
	}
}

func TestLoadNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "wwclient.toml")
	if err := os.WriteFile(p, []byte("root = \"bad\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("error should name the file: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("missing file: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		next := u.Unwrap()
		if next == nil {
			return err
		}
		err = next
	}
}

func TestParseCmdline(t *testing.T) {
	cl := ParseCmdline(`BOOT_IMAGE=vmlinuz console=ttyS0 wwid=52-54-00-00-00-0A wwserver=10.0.2.1:9873 wwroot=initramfs init=/bin/init2 selinux=1 quiet` + "\n")
	want := Cmdline{WWID: "52:54:00:00:00:0a", Server: "10.0.2.1:9873", Root: "initramfs", Init: "/bin/init2", SELinux: true}
	if cl != want {
		t.Fatalf("got %+v want %+v", cl, want)
	}
	// later wins, quotes, "--" ends kernel parameters, invalid values ignored
	cl = ParseCmdline(`wwserver=a:1 wwserver="b:2" wwroot=nfs wwid=nope selinux=0 foo="a b" -- init=/not/this`)
	if cl.Server != "b:2" || cl.Root != "" || cl.WWID != "" || cl.SELinux || cl.Init != "" {
		t.Fatalf("got %+v", cl)
	}
	d := strings.Repeat("0123456789abcdef", 4)
	cl = ParseCmdline("wwimage=" + d)
	if cl.Image != d || Merge(nil, cl, "").Image != d {
		t.Fatalf("wwimage: %+v", cl)
	}
	for _, bad := range []string{"short", strings.ToUpper(d), d + "0", "../" + d[3:]} {
		if cl := ParseCmdline("wwimage=" + bad); cl.Image != "" {
			t.Errorf("wwimage=%s accepted", bad)
		}
	}
	words := SplitCmdline(`a "b c" d="e f"g -- h`)
	if strings.Join(words, "|") != "a|b c|d=e fg" {
		t.Fatalf("split: %q", words)
	}
}

func TestReadCmdline(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cmdline")
	if err := os.WriteFile(p, []byte("wwid=52:54:00:00:00:01 wwserver=s:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cl, err := ReadCmdline(p)
	if err != nil || cl.Server != "s:1" || cl.WWID != "52:54:00:00:00:01" {
		t.Fatalf("%+v %v", cl, err)
	}
	if _, err := ReadCmdline(p + ".missing"); err == nil {
		t.Fatal("want error for missing file")
	}
}

func TestMergePrecedence(t *testing.T) {
	c, err := Parse([]byte(designExample))
	if err != nil {
		t.Fatal(err)
	}
	// file only
	e := Merge(c, Cmdline{}, "")
	if e.Server != "10.0.2.1:9873" || e.Root != "tmpfs" || e.Init != "/sbin/init" || e.MAC != "52:54:00:00:00:01" || e.SELinux {
		t.Fatalf("file only: %+v", e)
	}
	// cmdline wins for server, root and init; config MAC wins over wwid
	e = Merge(c, Cmdline{WWID: "52:54:00:00:00:99", Server: "10.9.9.9:1", Root: "initramfs", Init: "/init2", SELinux: true}, "")
	if e.Server != "10.9.9.9:1" || e.Root != "initramfs" || e.Init != "/init2" || e.MAC != "52:54:00:00:00:01" || !e.SELinux {
		t.Fatalf("cmdline: %+v", e)
	}
	// flag wins over both
	e = Merge(c, Cmdline{Server: "10.9.9.9:1"}, "127.0.0.1:5")
	if e.Server != "127.0.0.1:5" {
		t.Fatalf("flag: %+v", e)
	}
	// no file: everything from the command line, defaults elsewhere
	e = Merge(nil, Cmdline{WWID: "52:54:00:00:00:99", Server: "s:1"}, "")
	if e.Server != "s:1" || e.Root != "tmpfs" || e.MAC != "52:54:00:00:00:99" || e.Config.Interval() != 60*time.Second {
		t.Fatalf("no file: %+v", e)
	}
	// Merge copies: changing the result does not alias the input
	e = Merge(c, Cmdline{}, "")
	e.Config.Network[0].IPAddr = "1.2.3.4"
	if c.Network[0].IPAddr != "10.0.2.11" {
		t.Fatal("Merge aliases the network slice")
	}
}

func TestServerURL(t *testing.T) {
	ok := map[string]string{
		"10.0.2.1:9873":          "http://10.0.2.1:9873",
		"10.0.2.1":               "http://10.0.2.1:9873",
		"ww.example":             "http://ww.example:9873",
		"http://10.0.2.1:80/":    "http://10.0.2.1:80",
		"http://h":               "http://h:9873",
		"https://h:8443/prefix/": "https://h:8443/prefix",
		"[fd00::1]:9873":         "http://[fd00::1]:9873",
	}
	for in, want := range ok {
		u, err := ServerURL(in)
		if err != nil || u.String() != want {
			t.Errorf("ServerURL(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://h", "http://", "a/b:1"} {
		if _, err := ServerURL(bad); err == nil {
			t.Errorf("ServerURL(%q): want error", bad)
		}
	}
}

func TestPrefixLenAndMAC(t *testing.T) {
	for in, want := range map[string]int{"255.255.255.0": 24, "255.255.0.0": 16, "255.255.255.255": 32, "0.0.0.0": 0, "20": 20} {
		if got, err := PrefixLen(in); err != nil || got != want {
			t.Errorf("PrefixLen(%q) = %d, %v", in, got, err)
		}
	}
	for _, bad := range []string{"255.0.255.0", "x", "33", "fe80::"} {
		if _, err := PrefixLen(bad); err == nil {
			t.Errorf("PrefixLen(%q): want error", bad)
		}
	}
	// hwaddr is trimmed and normalised (nodeapi.NormalizeMAC); a 20-byte
	// infiniband address is refused.
	c := &Config{Network: []Network{{Name: "eth0", HWAddr: " AA-bb-CC-00-11-22 "}}}
	if err := c.Validate(); err != nil && strings.Contains(err.Error(), "hwaddr") || c.Network[0].HWAddr != "aa:bb:cc:00:11:22" {
		t.Fatalf("%q %v", c.Network[0].HWAddr, err)
	}
	c = &Config{Network: []Network{{Name: "ib0", HWAddr: "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"}}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "hwaddr") {
		t.Fatalf("20-byte infiniband address must be refused: %v", err)
	}
}

func TestServerURLs(t *testing.T) {
	us, err := ServerURLs("10.0.2.1:9873,10.0.2.2, http://10.0.2.3:80")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range us {
		got = append(got, u.String())
	}
	if want := "http://10.0.2.1:9873 http://10.0.2.2:9873 http://10.0.2.3:80"; strings.Join(got, " ") != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, bad := range []string{"", "10.0.2.1:9873,", "a b,c"} {
		if _, err := ServerURLs(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := Parse([]byte("server = \"10.0.2.1:9873,10.0.2.2:9873\"\n")); err != nil {
		t.Errorf("config with two servers: %v", err)
	}
}

func TestValidTmpfsSize(t *testing.T) {
	for s, want := range map[string]bool{"90%": true, "100%": true, "101%": false, "0%": false, "12G": true, "512m": true,
		"1048576": true, "0": false, "": false, "1GG": false, "1T": false, "-1": false, "1,nr_inodes=5": false, "%": false} {
		if got := ValidTmpfsSize(s); got != want {
			t.Errorf("ValidTmpfsSize(%q) = %v, want %v", s, got, want)
		}
	}
	if c := ParseCmdline("wwtmpfs_size=80% wwtmpfs_size=bad"); c.TmpfsSize != "" || c.BadTmpfsSize != "bad" {
		t.Errorf("later value wins: %+v", c)
	}
}
