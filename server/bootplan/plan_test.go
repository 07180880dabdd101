package bootplan

import (
	"reflect"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

const mac = "52:54:00:00:00:02"

func server(secure bool) *config.Server {
	return &config.Server{Address: "10.0.2.1", Port: 9873, Secure: &secure}
}

func TestNew(t *testing.T) {
	node := &config.Node{Name: "n002", Root: "tmpfs", KernelArgs: []string{"console=ttyS0", "quiet"}}
	keyed := &config.Node{Name: "n001", Root: "tmpfs", AssetKey: "s3cret"}
	odd := &config.Node{Name: "odd", Root: "tmp\nfs", KernelArgs: []string{"a\nshell", "b\x7f"}}
	empty := &config.Node{Name: "e", Root: "initramfs", KernelArgs: []string{""}}
	twoEmpty := &config.Node{Name: "e2", Root: "initramfs", KernelArgs: []string{"", ""}}
	for _, tc := range []struct {
		name     string
		srv      *config.Server
		node     *config.Node
		others   []string
		initrds  []string // names
		args     string
		fallback string // the image's fallbacks, joined by " "
	}{
		{"insecure", server(false), node, nil,
			[]string{"image.img.gz", "system.img.gz", "runtime.img.gz"},
			"wwid=" + mac + " wwserver=10.0.2.1:9873 wwroot=tmpfs console=ttyS0 quiet", ""},
		{"secure: no runtime overlay at boot", server(true), node, nil,
			[]string{"image.img.gz", "system.img.gz"},
			"wwid=" + mac + " wwserver=10.0.2.1:9873 wwroot=tmpfs console=ttyS0 quiet", ""},
		{"asset key: no runtime overlay at boot", server(false), keyed, nil,
			[]string{"image.img.gz", "system.img.gz"},
			"wwid=" + mac + " wwserver=10.0.2.1:9873 wwroot=tmpfs", ""},
		{"two servers", server(false), node, []string{"10.0.2.2:9873"},
			[]string{"image.img.gz", "system.img.gz", "runtime.img.gz"},
			"wwid=" + mac + " wwserver=10.0.2.1:9873,10.0.2.2:9873 wwroot=tmpfs console=ttyS0 quiet",
			"http://10.0.2.2:9873/image/" + mac},
		// Not rewritten: a renderer refuses what its syntax cannot hold
		// (bootscript's ipxeSafe), so no node boots a silently changed line.
		{"control characters are kept for the renderer to refuse", server(false), odd, nil,
			[]string{"image.img.gz", "system.img.gz", "runtime.img.gz"},
			"wwid=" + mac + " wwserver=10.0.2.1:9873 wwroot=tmp\nfs a\nshell b\x7f", ""},
		{"one empty kernel arg adds nothing", server(false), empty, nil,
			[]string{"image.img.gz", "system.img.gz", "runtime.img.gz"},
			"wwid=" + mac + " wwserver=10.0.2.1:9873 wwroot=initramfs", ""},
		{"two empty kernel args are kept", server(false), twoEmpty, nil,
			[]string{"image.img.gz", "system.img.gz", "runtime.img.gz"},
			"wwid=" + mac + " wwserver=10.0.2.1:9873 wwroot=initramfs  ", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(tc.srv, tc.node, mac, tc.others)
			var names []string
			for _, f := range p.Initrds() {
				names = append(names, f.Name)
			}
			if !reflect.DeepEqual(names, tc.initrds) {
				t.Errorf("initrds = %q, want %q", names, tc.initrds)
			}
			if got := p.CommandLine(); got != tc.args {
				t.Errorf("command line = %q, want %q", got, tc.args)
			}
			if got := strings.Join(p.Image.Fallbacks, " "); got != tc.fallback {
				t.Errorf("image fallbacks = %q, want %q", got, tc.fallback)
			}
			if p.FetchRuntime != (len(tc.initrds) == 3) {
				t.Errorf("FetchRuntime = %v with initrds %q", p.FetchRuntime, tc.initrds)
			}
			if p.Node != tc.node || p.MAC != mac || p.AssetKey != tc.node.HasAssetKey() || p.Server.Secure != tc.srv.IsSecure() {
				t.Errorf("plan = %+v", p)
			}
		})
	}
}

func TestFiles(t *testing.T) {
	p := New(server(true), &config.Node{Name: "n", Root: "tmpfs"}, mac, []string{"10.0.2.2:80", "[fd00::3]:9873"})
	want := []File{
		{"kernel", "kernel", "kernel", "/kernel/" + mac, "http://10.0.2.1:9873/kernel/" + mac,
			[]string{"http://10.0.2.2:80/kernel/" + mac, "http://[fd00::3]:9873/kernel/" + mac}},
		{"image", "image.img.gz", "image", "/image/" + mac, "http://10.0.2.1:9873/image/" + mac,
			[]string{"http://10.0.2.2:80/image/" + mac, "http://[fd00::3]:9873/image/" + mac}},
		{"system", "system.img.gz", "system overlay", "/overlay/system/" + mac, "http://10.0.2.1:9873/overlay/system/" + mac,
			[]string{"http://10.0.2.2:80/overlay/system/" + mac, "http://[fd00::3]:9873/overlay/system/" + mac}},
	}
	if got := p.Files(); !reflect.DeepEqual(got, want) {
		t.Errorf("Files =\n%+v\nwant\n%+v", got, want)
	}
	// Not fetched at boot (secure mode), but still planned: wwclient's.
	if p.RuntimeOverlay.URL != "http://10.0.2.1:9873/overlay/runtime/"+mac || p.RuntimeOverlay.Name != NameRuntime {
		t.Errorf("runtime overlay = %+v", p.RuntimeOverlay)
	}
	if !reflect.DeepEqual(p.Servers, []string{"10.0.2.1:9873", "10.0.2.2:80", "[fd00::3]:9873"}) ||
		!reflect.DeepEqual(p.ServerURLs, []string{"http://10.0.2.1:9873", "http://10.0.2.2:80", "http://[fd00::3]:9873"}) {
		t.Errorf("servers %q, URLs %q", p.Servers, p.ServerURLs)
	}
	if p.Server != (Server{Address: "10.0.2.1", Port: 9873, URL: "http://10.0.2.1:9873", Secure: true}) {
		t.Errorf("server = %+v", p.Server)
	}
}

func TestServers(t *testing.T) {
	const self = "10.0.2.1:9873"
	for _, tc := range []struct {
		name  string
		peers []string
		want  []string
	}{
		{"alone", nil, []string{self}},
		{"self listed too", []string{"10.0.2.2:9873", self}, []string{self, "10.0.2.2:9873"}},
		{"repeats", []string{"10.0.2.2:9873", "10.0.2.2:9873"}, []string{self, "10.0.2.2:9873"}},
		{"no port", []string{"10.0.2.2"}, []string{self}},
		{"command injection", []string{"10.0.2.3:9873 && shell", "10.0.2.4:${x}", "a:1;b", "a:1|b", "a:1#", "a:\n1"}, []string{self}},
		{"ipv6", []string{"[fd00::2]:9873"}, []string{self, "[fd00::2]:9873"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Servers(self, tc.peers); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Servers = %q, want %q", got, tc.want)
			}
		})
	}
}
