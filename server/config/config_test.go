package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/nodeapi"
)

const goodServer = `address = "10.0.2.1"
update_interval = "5s"
[dhcp]
enabled = true
interface = "br0"
range_start = "10.0.2.100"
range_end = "10.0.2.150"
`

const goodNodes = `
[profiles.default]
image = "debian"
kernel_args = ["console=ttyS0"]
system_overlays = ["wwinit"]
runtime_overlays = ["generic"]
[profiles.default.tags]
rack = "r0"

[profiles.gpu]
kernel_args = ["console=ttyS0", "nvidia"]
[profiles.gpu.tags]
rack = "r9"

[nodes.n002]
profiles = ["default", "gpu"]
[nodes.n002.network.eth1]
hwaddr = "52-54-00-00-00-AA"
[nodes.n002.network.eth0]
hwaddr = "52:54:00:00:00:02"
ipaddr = "10.0.2.12"
primary = true

[nodes.n001]
profiles = ["default"]
asset_key = "s3cret"
[nodes.n001.tags]
rack = "r1"
[nodes.n001.network.eth0]
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.0.2.11"
netmask = "255.255.255.0"
`

func TestParseServerDefaults(t *testing.T) {
	s, err := ParseServer("wwserver.toml", []byte(goodServer))
	if err != nil {
		t.Fatal(err)
	}
	if s.Port != DefaultPort || s.Listen != ":9873" {
		t.Errorf("port = %d listen = %q", s.Port, s.Listen)
	}
	if s.UpdateInterval.Duration != 5*time.Second {
		t.Errorf("interval = %v", s.UpdateInterval)
	}
	if !s.IsSecure() {
		t.Error("secure mode must default on")
	}
	if s.URL() != "http://10.0.2.1:9873" {
		t.Errorf("URL = %q", s.URL())
	}
	if s.DHCP.Mode != ModeReservation || s.DHCP.BIOSFile != "undionly.kpxe" || s.TFTP.Dir != "/usr/lib/ipxe" {
		t.Errorf("dhcp/tftp defaults: %+v %+v", s.DHCP, s.TFTP)
	}
}

func TestParseNodesMerge(t *testing.T) {
	ns, err := ParseNodes("nodes.toml", []byte(goodNodes))
	if err != nil {
		t.Fatal(err)
	}
	if len(ns.List) != 2 || ns.List[0].Name != "n001" || ns.List[1].Name != "n002" {
		t.Fatalf("list not sorted by name: %+v", ns.List)
	}
	n1, n2 := ns.ByName["n001"], ns.ByName["n002"]
	if n1.Tags["rack"] != "r1" || n2.Tags["rack"] != "r9" {
		t.Errorf("tags: node must win over profiles, later profile over earlier: %v %v", n1.Tags, n2.Tags)
	}
	if strings.Join(n2.KernelArgs, " ") != "console=ttyS0 nvidia" {
		t.Errorf("kernel args = %v", n2.KernelArgs)
	}
	if n2.Primary().Name != "eth0" || n2.Network[1].HWAddr != "52:54:00:00:00:aa" {
		t.Errorf("n002 network = %+v", n2.Network)
	}
	if ns.ByMAC["52:54:00:00:00:aa"] != n2 || ns.ByIP["10.0.2.11"] != n1 {
		t.Error("MAC/IP index wrong")
	}
	if n1.Root != RootTmpfs || n1.AssetKey != "s3cret" || n1.Image != "debian" {
		t.Errorf("n001 = %+v", n1)
	}
	ns2, _ := ParseNodes("nodes.toml", []byte(goodNodes+"\n[nodes.n003]\nprofiles=[\"default\"]\n"))
	if ns2.Hash == ns.Hash {
		t.Error("hash must change when nodes change")
	}
}

func TestErrorsNameFileLineKey(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"unknown key", "[nodes.a]\nimage = \"x\"\nimgae = \"y\"\n", "nodes.toml:3: nodes.a.imgae: unknown key"},
		{"bad mac", "[nodes.a]\nimage = \"x\"\n[nodes.a.network.eth0]\nhwaddr = \"52:54:00:zz:00:01\"\n", "nodes.toml:4: nodes.a.network.eth0.hwaddr:"},
		{"bad ip", "[nodes.a]\nimage = \"x\"\n[nodes.a.network.eth0]\nipaddr = \"10.0.0.300\"\n", "nodes.toml:4: nodes.a.network.eth0.ipaddr:"},
		{"missing profile", "[nodes.a]\nimage = \"x\"\nprofiles = [\"nope\"]\n", "nodes.toml:3: nodes.a.profiles: profile \"nope\" is not defined"},
		{"dup mac", "[nodes.a]\nimage = \"x\"\n[nodes.a.network.eth0]\nhwaddr = \"52:54:00:00:00:01\"\n[nodes.b]\nimage = \"x\"\n[nodes.b.network.eth0]\nhwaddr = \"52-54-00-00-00-01\"\n", "nodes.toml:8: nodes.b.network.eth0.hwaddr: MAC 52:54:00:00:00:01 is also used by nodes.a.network.eth0"},
		{"dup ip", "[nodes.a]\nimage = \"x\"\n[nodes.a.network.eth0]\nipaddr = \"10.0.0.1\"\n[nodes.b]\nimage = \"x\"\n[nodes.b.network.eth0]\nipaddr = \"10.0.0.1\"\n", "nodes.toml:8: nodes.b.network.eth0.ipaddr: address 10.0.0.1 is also used"},
		{"no image", "[nodes.a]\nroot = \"tmpfs\"\n", "nodes.toml:1: nodes.a.image: no image set"},
		{"syntax", "[nodes.a]\nimage = \n", "nodes.toml:2"},
		{"bad name", "[nodes.\"../x\"]\nimage = \"x\"\n", "nodes.toml:1: nodes.../x: name"},
		{"two primaries", "[nodes.a]\nimage = \"x\"\n[nodes.a.network.e0]\nprimary = true\n[nodes.a.network.e1]\nprimary = true\n", "nodes.a.network: 2 devices are marked primary"},
	}
	for _, c := range cases {
		_, err := ParseNodes("nodes.toml", []byte(c.in))
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%s: want *Error, got %v", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not contain %q", c.name, err, c.want)
		}
	}
	_, err := ParseServer("wwserver.toml", []byte("address = \"10.0.0.1\"\n[dhcp]\nmode = \"weird\"\n"))
	if err == nil || !strings.Contains(err.Error(), "wwserver.toml:3: dhcp.mode:") {
		t.Errorf("server error = %v", err)
	}
	_, err = ParseServer("wwserver.toml", []byte("listen = \":80\"\n"))
	if err == nil || !strings.Contains(err.Error(), "address: required") {
		t.Errorf("missing address error = %v", err)
	}
}

func TestStoreKeepsLastGoodConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) { // by rename, as editors do: seen on the next request
		t.Helper()
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write(ServerFile, goodServer)
	write(NodesFile, goodNodes)
	st, err := NewStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	gen := st.Current().Gen
	write(NodesFile, goodNodes+"\n[nodes.bad]\nimage = 3\n")
	snap := st.Fresh()
	if snap.Gen != gen || len(snap.Nodes.List) != 2 {
		t.Fatalf("bad file replaced the good config: gen %d nodes %d", snap.Gen, len(snap.Nodes.List))
	}
	if st.LastError() == nil || !strings.Contains(st.LastError().Error(), "nodes.toml:") {
		t.Errorf("last error = %v", st.LastError())
	}
	write(NodesFile, goodNodes+"\n[nodes.n003]\nprofiles = [\"default\"]\n")
	snap = st.Fresh()
	if snap.Gen != gen+1 || len(snap.Nodes.List) != 3 || st.LastError() != nil {
		t.Fatalf("good edit not picked up: gen %d nodes %d err %v", snap.Gen, len(snap.Nodes.List), st.LastError())
	}
}

func TestStoreWatchPicksUpEdit(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ServerFile), []byte(goodServer), 0o644)
	os.WriteFile(filepath.Join(dir, NodesFile), []byte(goodNodes), 0o644)
	st, err := NewStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan *Snapshot, 4)
	st.OnReload = func(s *Snapshot) { reloaded <- s }
	done := make(chan struct{})
	defer close(done)
	if err := st.Watch(done); err != nil {
		t.Fatal(err)
	}
	// Replace by rename, as editors do.
	tmp := filepath.Join(dir, ".nodes.tmp")
	os.WriteFile(tmp, []byte(goodNodes+"\n[nodes.n009]\nprofiles = [\"default\"]\n"), 0o644)
	if err := os.Rename(tmp, filepath.Join(dir, NodesFile)); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-reloaded:
		if s.Nodes.ByName["n009"] == nil {
			t.Errorf("reloaded config lacks n009")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watcher did not reload within 10s")
	}
}

func FuzzParseNodes(f *testing.F) {
	f.Add([]byte(goodNodes))
	f.Add([]byte("[nodes.a]\nimage=\"x\"\n[nodes.a.network.e]\nhwaddr=\"52:54:00:00:00:01\"\n"))
	f.Add([]byte("[[nodes]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ns, err := ParseNodes("nodes.toml", data)
		if err == nil {
			for mac, n := range ns.ByMAC {
				if _, err := nodeapi.NormalizeMAC(mac); err != nil || ns.ByName[n.Name] != n {
					t.Fatalf("inconsistent index for %s", mac)
				}
			}
		}
	})
}

// TestAnswerRouterSolicitations: "auto" by default; the strings "auto",
// "true" and "false" and the booleans of old configs are accepted; anything
// else is refused with file, line and key.
func TestAnswerRouterSolicitations(t *testing.T) {
	for in, want := range map[string]AnswerRS{
		"":                                      AnswerRSAuto,
		`answer_router_solicitations = "auto"`:  AnswerRSAuto,
		`answer_router_solicitations = "true"`:  AnswerRSAlways,
		`answer_router_solicitations = "false"`: AnswerRSNever,
		`answer_router_solicitations = true`:    AnswerRSAlways,
		`answer_router_solicitations = false`:   AnswerRSNever,
	} {
		s, err := ParseServer("wwserver.toml", []byte(goodServer+in+"\n"))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := s.DHCP.AnswerRouterSolicitations; got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
	for _, in := range []string{`"yes"`, `1`, `"Auto"`, `["auto"]`} {
		_, err := ParseServer("wwserver.toml", []byte(goodServer+"answer_router_solicitations = "+in+"\n"))
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "wwserver.toml:8: dhcp.answer_router_solicitations: ") ||
			!strings.Contains(err.Error(), `"auto", true or false`) {
			t.Errorf("%s: error = %v", in, err)
		}
	}
	if b, err := AnswerRS("").MarshalText(); err != nil || string(b) != "auto" {
		t.Errorf(`AnswerRS("").MarshalText() = %q, %v`, b, err)
	}
}
