package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

// cli runs wwserver in-process and returns its output; wantOK says whether
// it must succeed or fail.
func cli(t *testing.T, wantOK bool, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	code := run(args, &out, &out)
	if (code == 0) != wantOK {
		t.Fatalf("wwserver %s: exit %d (want ok=%v)\n%s", strings.Join(args, " "), code, wantOK, out.String())
	}
	return out.String()
}

func TestNodeCommands(t *testing.T) {
	dir := initTree(t)
	replacePlaceholderKernel(t, dir) // check is asked for "ok"
	hand, _ := os.ReadFile(filepath.Join(dir, config.NodesFile))
	r := "--root=" + dir

	out := cli(t, true, "node", "add", "c[01-03]", r, "--ipaddr", "10.0.2.101", "--netmask", "255.255.255.0", "--tag", "rack=r7")
	if !strings.Contains(out, "added 3 node(s): c[01-03]") {
		t.Errorf("add output: %s", out)
	}
	ns, err := config.LoadNodesTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, ip := range map[string]string{"c01": "10.0.2.101", "c02": "10.0.2.102", "c03": "10.0.2.103"} {
		n := ns.ByName[name]
		if n == nil || n.Primary().IPAddr != ip || n.Tags["rack"] != "r7" || n.Image != initImage || n.Primary().Netmask != "255.255.255.0" {
			t.Errorf("%s: %+v (want ip %s, default profile merged)", name, n, ip)
		}
	}
	// Refused, with the reason, and nothing written: existing name, duplicate address, MAC for many.
	managed := filepath.Join(dir, "nodes.d", "managed.toml")
	before, _ := os.ReadFile(managed)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"node", "add", "c01", r}, "already exists"},
		{[]string{"node", "add", "c09", r, "--ipaddr", "10.0.2.101"}, "address 10.0.2.101 is also used by"},
		{[]string{"node", "add", "c[10-11]", r, "--hwaddr", "52:54:00:00:10:10"}, "a MAC belongs to one node"},
		{[]string{"node", "add", "c12", r, "--profile", "nope"}, `profile "nope" is not defined`},
		{[]string{"node", "set", "n001", r, "--image", "x"}, "is written by hand in"},
		{[]string{"node", "set", "c01", r}, "nothing to set"},
		{[]string{"node", "delete", "c99", r}, "not defined"},
		{[]string{"profile", "delete", "default", r}, "written by hand"},
		{[]string{"node", "add", "c[1-", r}, "hostlist"},
		{[]string{"node", "set", "c01", r, "--root-mode", "ramdisk"}, `must be "tmpfs" or "initramfs"`},
	} {
		if out := cli(t, false, c.args...); !strings.Contains(out, c.want) {
			t.Errorf("%v: output %q lacks %q", c.args, out, c.want)
		}
	}
	if after, _ := os.ReadFile(managed); !bytes.Equal(before, after) {
		t.Errorf("a refused command changed managed.toml")
	}

	cli(t, true, "node", "set", "c[02-03]", r, "--hwaddr", "", "--ipaddr", "10.0.2.202", "--tag", "rack=", "--kernel-args", "quiet", "--kernel-args", "console=ttyS0")
	cli(t, true, "node", "set", "c01", r, "--hwaddr", "52-54-00-AA-00-01", "--discoverable=false", "--root-mode", "initramfs")
	cli(t, true, "node", "delete", "c03", r)
	ns, err = config.LoadNodesTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	c2 := ns.ByName["c02"]
	if ns.ByName["c03"] != nil || c2.Primary().IPAddr != "10.0.2.202" || c2.Tags["rack"] != "" || strings.Join(c2.KernelArgs, " ") != "quiet console=ttyS0" {
		t.Errorf("after set/delete: c03=%v c02=%+v", ns.ByName["c03"], c2)
	}
	if c1 := ns.ByMAC["52:54:00:aa:00:01"]; c1 == nil || c1.Root != config.RootInitramfs {
		t.Errorf("c01 MAC or root mode not set: %+v", c1)
	}

	out = cli(t, true, "node", "list", "c[01-02],n001", r)
	if !strings.Contains(out, "52:54:00:aa:00:01") || !strings.Contains(out, "n001") || strings.Contains(out, "n002") {
		t.Errorf("node list:\n%s", out)
	}
	var listed []config.Node
	if err := json.Unmarshal([]byte(cli(t, true, "node", "list", "--json", r)), &listed); err != nil || len(listed) != 4 {
		t.Errorf("node list --json: %d nodes, %v", len(listed), err)
	}

	// Profiles: add, use, refuse deleting while used, set, delete.
	cli(t, true, "profile", "add", "gpu", r, "--kernel-args", "nvidia", "--tag", "gpu=a100")
	cli(t, true, "node", "set", "c02", r, "--profile", "default,gpu")
	if out := cli(t, false, "profile", "delete", "gpu", r); !strings.Contains(out, `profile "gpu" is not defined`) {
		t.Errorf("deleting a used profile: %s", out)
	}
	cli(t, true, "profile", "set", "gpu", r, "--tag", "gpu=h100")
	out = cli(t, true, "profile", "list", r)
	if !strings.Contains(out, "gpu") || !strings.Contains(out, "nodes.d/managed.toml") || !strings.Contains(out, "nodes.toml") {
		t.Errorf("profile list:\n%s", out)
	}
	ns, _ = config.LoadNodesTree(dir)
	if ns.ByName["c02"].Tags["gpu"] != "h100" {
		t.Errorf("profile set not merged: %v", ns.ByName["c02"].Tags)
	}
	cli(t, true, "node", "set", "c02", r, "--profile", "default")
	cli(t, true, "profile", "delete", "gpu", r)

	if now, _ := os.ReadFile(filepath.Join(dir, config.NodesFile)); !bytes.Equal(now, hand) {
		t.Errorf("nodes.toml was changed by the node/profile commands")
	}
	if out := cli(t, false, "check", r); !strings.Contains(out, "nodes.d/managed.toml: nodes.c02.network: no device has a hwaddr") {
		t.Errorf("check of a node without MAC: %s", out)
	}
	cli(t, true, "node", "set", "c02", r, "--discoverable")
	if out := cli(t, true, "check", r); !strings.Contains(out, "ok") {
		t.Errorf("check after edits: %s", out)
	}
}

func TestNodeImport(t *testing.T) {
	dir := initTree(t)
	r := "--root=" + dir
	list := filepath.Join(t.TempDir(), "macs.csv")
	writeTestFile(t, list, `# vendor: rack 4, bottom to top
Serial,Slot,MAC Address
SN1,1,52:54:00:44:00:0C
SN2,2,52-54-00-44-00-0a

SN3,3,52:54:00:44:00:0b
`)
	out := cli(t, true, "node", "import", list, "--names", "r4n[01-03]", "--ipaddr", "10.0.2.41", r, "--dry-run")
	for _, want := range []string{"r4n01  52:54:00:44:00:0c  10.0.2.41", "r4n03  52:54:00:44:00:0b  10.0.2.43", "nothing written"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nodes.d", "managed.toml")); !os.IsNotExist(err) {
		t.Fatalf("dry run wrote managed.toml: %v", err)
	}
	cli(t, true, "node", "import", list, "--names", "r4n[01-03]", "--ipaddr", "10.0.2.41", r)
	ns, err := config.LoadNodesTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, mac := range map[string]string{"r4n01": "52:54:00:44:00:0c", "r4n02": "52:54:00:44:00:0a", "r4n03": "52:54:00:44:00:0b"} {
		if n := ns.ByMAC[mac]; n == nil || n.Name != name || n.Image != initImage {
			t.Errorf("%s: %+v, want %s", mac, n, name)
		}
	}
	plain := filepath.Join(t.TempDir(), "macs.txt")
	for _, c := range []struct{ content, names, want string }{
		{"52:54:00:55:00:01\n52:54:00:55:00:02\n", "x[1-3]", "has 2 MACs but --names gives 3 names"},
		{"52:54:00:55:00:01\nnot-a-mac\n", "x[1-2]", "macs.txt:2: \"not-a-mac\" is not a MAC"},
		{"52:54:00:55:00:01\n52:54:00:55:00:01\n", "x[1-2]", "macs.txt:2: MAC 52:54:00:55:00:01 is also on line 1"},
		{"52:54:00:44:00:0c\n", "x1", "MAC 52:54:00:44:00:0c is also used by"},
		{"# empty\n", "x1", "no MAC addresses"},
		{"52:54:00:55:00:01\nff:ff:ff:ff:ff:ff\n", "x[1-2]", "macs.txt:2: MAC ff:ff:ff:ff:ff:ff is the broadcast address"},
		{"01:00:5e:00:00:01\n", "x1", "macs.txt:1: MAC 01:00:5e:00:00:01 is a multicast address"},
	} {
		writeTestFile(t, plain, c.content)
		if out := cli(t, false, "node", "import", plain, "--names", c.names, r); !strings.Contains(out, c.want) {
			t.Errorf("import %q: %q lacks %q", c.content, out, c.want)
		}
	}
}

// TestNodeKernelArgsTakenWhole (issue 20, Medium 5 and Low 10): each
// --kernel-args is one argument as given (it was parsed as CSV, so
// console=ttyS0,115200n8 became two arguments and quotes were a parse
// error); control characters and iPXE metacharacters are refused with a
// reason and nothing is written; "" clears the list.
func TestNodeKernelArgsTakenWhole(t *testing.T) {
	dir := initTree(t)
	r := "--root=" + dir
	want := []string{"console=ttyS0,115200n8", `rd.break="pre mount"`, "quiet"}
	cli(t, true, "node", "add", "k01", r, "--hwaddr", "52:54:00:00:20:01",
		"--kernel-args", want[0], "--kernel-args", want[1], "--kernel-args", want[2])
	ns, err := config.LoadNodesTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := ns.ByName["k01"].KernelArgs; strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("kernel args %q, want %q", got, want)
	}
	if out := cli(t, true, "render", "ipxe", "k01", r); !strings.Contains(out, ` console=ttyS0,115200n8 rd.break="pre mount" quiet || goto boot_failed`) {
		t.Errorf("boot line of k01:\n%s", out)
	}

	managed := filepath.Join(dir, "nodes.d", "managed.toml")
	before, _ := os.ReadFile(managed)
	for _, c := range []struct{ arg, want string }{
		{"console=ttyS0\nshell", "control character"},
		{"quiet\x00", "control character"},
		{"quiet || shell", `holds "||", which iPXE reads as a command separator`},
		{"a && b", `"&&"`},
		{"a;b", `";"`},
		{"#x", "comment"},
		{"ip=${net0/ip}", "setting expansion"},
	} {
		for _, cmd := range [][]string{{"node", "set", "k01"}, {"node", "add", "k02"}, {"profile", "add", "p2"}} {
			args := append(append([]string{}, cmd...), r, "--kernel-args", "quiet", "--kernel-args", c.arg)
			if out := cli(t, false, args...); !strings.Contains(out, "--kernel-args: kernel argument") || !strings.Contains(out, c.want) {
				t.Errorf("%v %q: output %q lacks the reason %q", cmd, c.arg, out, c.want)
			}
		}
	}
	if after, _ := os.ReadFile(managed); !bytes.Equal(before, after) {
		t.Errorf("a refused --kernel-args changed managed.toml")
	}

	// "" clears the node's own list: the profile's applies again.
	cli(t, true, "node", "set", "k01", r, "--kernel-args", "")
	ns, err = config.LoadNodesTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, prof := ns.ByName["k01"].KernelArgs, ns.ByName["n001"].KernelArgs; strings.Join(got, " ") != strings.Join(prof, " ") {
		t.Errorf("after clearing: %q, want the profile's %q", got, prof)
	}
}

// TestNodeAddressesRefused (issue 20, Low 11): `node add 'bd[1-3]' --ipaddr
// 10.8.0.254 --netmask 255.255.255.0` handed out the broadcast address and
// one outside the network; such a range, a network or broadcast address
// however it is given, and a MAC no network card has are refused with the
// reason, and nothing is written.
func TestNodeAddressesRefused(t *testing.T) {
	dir := initTree(t)
	r := "--root=" + dir
	managed := filepath.Join(dir, "nodes.d", "managed.toml")
	cli(t, true, "node", "add", "ok1", r, "--ipaddr", "10.8.0.10", "--netmask", "255.255.255.0")
	before, err := os.ReadFile(managed)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"node", "add", "bd[1-3]", "--ipaddr", "10.8.0.254", "--netmask", "255.255.255.0"},
			"--ipaddr 10.8.0.254 counts up to 10.8.0.255 for bd2: 10.8.0.255 is the broadcast address of 10.8.0.0/24"},
		{[]string{"node", "add", "bd[1-3]", "--ipaddr", "10.8.0.0", "--netmask", "255.255.255.0"},
			"10.8.0.0 is the network address of 10.8.0.0/24"},
		{[]string{"node", "add", "bd[1-3]", "--ipaddr", "10.8.0.4", "--netmask", "255.255.255.254"},
			"--ipaddr 10.8.0.4 counts up to 10.8.0.6 for bd3: 10.8.0.6 is outside 10.8.0.4/31"},
		// Without --netmask, the netmask the node ends up with (here its
		// own, set earlier) decides; the config validation names the key.
		{[]string{"node", "set", "ok1", "--ipaddr", "10.8.0.255"},
			"nodes.ok1.network.eth0.ipaddr: 10.8.0.255 is the broadcast address of 10.8.0.0/24"},
		{[]string{"node", "add", "m1", "--hwaddr", "ff:ff:ff:ff:ff:ff"}, "--hwaddr: MAC ff:ff:ff:ff:ff:ff is the broadcast address"},
		{[]string{"node", "add", "m1", "--hwaddr", "00:00:00:00:00:00"}, "--hwaddr: MAC 00:00:00:00:00:00 is all zeros"},
		{[]string{"node", "add", "m1", "--hwaddr", "33:33:00:00:00:01"}, "--hwaddr: MAC 33:33:00:00:00:01 is a multicast address"},
	} {
		if out := cli(t, false, append(c.args, r)...); !strings.Contains(out, c.want) {
			t.Errorf("%v: output %q lacks %q", c.args, out, c.want)
		}
	}
	if after, _ := os.ReadFile(managed); !bytes.Equal(before, after) {
		t.Errorf("a refused command changed managed.toml")
	}
	// The last three host addresses of the network are fine.
	cli(t, true, "node", "add", "bd[1-3]", r, "--ipaddr", "10.8.0.252", "--netmask", "255.255.255.0")
	ns, err := config.LoadNodesTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ip := ns.ByName["bd3"].Primary().IPAddr; ip != "10.8.0.254" {
		t.Errorf("bd3 got %s", ip)
	}
}
