package provision

import (
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/status"
)

var update = flag.Bool("update", false, "rewrite ../bootscript/testdata/*.golden")

// golden compares a script the handler served with the renderer's golden
// file (server/bootscript renders it from the same nodes): the handler
// must serve it unchanged.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("..", "bootscript", "testdata", name+".golden")
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

func TestIPXEDefaultGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		secure bool
		mac    string
	}{
		{"ipxe_secure", true, macN002},
		{"ipxe_insecure", false, macN002},
		{"ipxe_insecure_assetkey", false, macN001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.secure)
			resp, body := e.get("/ipxe/" + tc.mac)
			wantCode(t, resp, body, http.StatusOK)
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type = %q", ct)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q", resp.Header.Get("Cache-Control"))
			}
			golden(t, tc.name, body)
			ev := e.status.last(t)
			if ev.Stage != status.StageIPXE || ev.Sent != "ipxe" || ev.MAC != tc.mac || ev.Node == "" || ev.IP != "127.0.0.1" {
				t.Errorf("event = %+v", ev)
			}
		})
	}
}

func TestIPXEScriptShape(t *testing.T) {
	e := newEnv(t, false)
	_, body := e.get("/ipxe/" + macN002)
	s := string(body)
	if !strings.HasPrefix(s, "#!ipxe\n") {
		t.Fatalf("script does not start with #!ipxe:\n%s", s)
	}
	for _, want := range []string{
		"kernel --name kernel http://10.0.2.1:9873/kernel/" + macN002,
		"initrd --name image.img.gz http://10.0.2.1:9873/image/" + macN002,
		"initrd --name system.img.gz http://10.0.2.1:9873/overlay/system/" + macN002,
		"initrd --name runtime.img.gz http://10.0.2.1:9873/overlay/runtime/" + macN002,
		"boot kernel initrd=image.img.gz initrd=system.img.gz initrd=runtime.img.gz wwid=" + macN002 +
			" wwserver=10.0.2.1:9873 wwroot=tmpfs console=ttyS0 quiet || goto boot_failed",
		"sleep 2", "sleep 30", "exit 1", "inc wwtry",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	// Every label that is jumped to exists; the retry's "goto ${wwlabel}"
	// jumps to each label a "set wwlabel" names.
	for _, line := range strings.Split(s, "\n") {
		for _, verb := range []string{"goto ", "set wwlabel "} {
			if i := strings.Index(line, verb); i >= 0 {
				label := strings.Fields(line[i+len(verb):])[0]
				if label != "${wwlabel}" && !strings.Contains(s, "\n:"+label+"\n") {
					t.Errorf("%s%s has no label", verb, label)
				}
			}
		}
	}
	// Secure mode: no runtime download and no initrd for it.
	e = newEnv(t, true)
	_, body = e.get("/ipxe/" + macN002)
	if strings.Contains(string(body), "runtime.img.gz") || strings.Contains(string(body), "/overlay/runtime/") {
		t.Errorf("secure-mode script fetches the runtime overlay:\n%s", body)
	}
	// The asset key never appears in a script.
	e = newEnv(t, false)
	_, body = e.get("/ipxe/" + macN001)
	if strings.Contains(string(body), "s3cret") || strings.Contains(string(body), "/overlay/runtime/") {
		t.Errorf("script leaks the asset key or fetches the runtime overlay:\n%s", body)
	}
}

func TestIPXEMACForms(t *testing.T) {
	e := newEnv(t, true)
	_, want := e.get("/ipxe/" + macN002)
	for _, m := range []string{"52-54-00-00-00-02", "52:54:00:00:00:02", "52:54-00:00-00:02"} {
		for _, form := range []string{m, strings.ToUpper(m)} {
			resp, body := e.get("/ipxe/" + form)
			wantCode(t, resp, body, http.StatusOK)
			if string(body) != string(want) {
				t.Errorf("%s: script differs from the canonical MAC's", form)
			}
		}
	}
}

func TestIPXEUnknownGolden(t *testing.T) {
	e := newEnv(t, true)
	resp, body := e.get("/ipxe/52-54-00-00-00-99")
	wantCode(t, resp, body, http.StatusOK)
	golden(t, "ipxe_unknown", body)
	ev := e.status.last(t)
	if ev.Node != "" || ev.MAC != macNone || ev.Stage != status.StageIPXE || ev.Sent != ReasonNotFound {
		t.Errorf("event = %+v", ev)
	}
	if !strings.Contains(string(body), "reboot") || !strings.Contains(string(body), macNone) {
		t.Errorf("unknown script:\n%s", body)
	}
}

func TestIPXECustomTemplate(t *testing.T) {
	e := newEnv(t, true)
	path := filepath.Join(e.cfg.root, "ipxe", "custom.ipxe")

	// Missing template: 404 (configured but absent), recorded.
	resp, body := e.get("/ipxe/" + macN003)
	wantCode(t, resp, body, http.StatusNotFound)
	if ev := e.status.last(t); ev.Sent != ReasonNotFound || ev.Node != "n003" {
		t.Errorf("event = %+v", ev)
	}

	writeFile(t, path, "#!ipxe\necho custom {{.Node.Name}} {{.MAC}} {{.Node.Root}} {{join .Node.KernelArgs \",\"}}\nchain {{.KernelURL}}\n")
	resp, body = e.get("/ipxe/" + macN003)
	wantCode(t, resp, body, http.StatusOK)
	want := "#!ipxe\necho custom n003 52:54:00:00:00:03 initramfs console=ttyS0,quiet\nchain http://10.0.2.1:9873/kernel/52:54:00:00:00:03\n"
	if string(body) != want {
		t.Errorf("got %q, want %q", body, want)
	}
	if ev := e.status.last(t); ev.Sent != "custom" || ev.Stage != status.StageIPXE {
		t.Errorf("event = %+v", ev)
	}

	// (That an unchanged file is parsed once is tested in server/bootscript.)

	// Edited file (same size, even): served on the next request.
	writeFile(t, path, strings.Replace(want, "chain", "CHAIN", 1))
	future := time.Now().Add(time.Second)
	_ = os.Chtimes(path, future, future)
	_, body = e.get("/ipxe/" + macN003)
	if !strings.Contains(string(body), "CHAIN") {
		t.Errorf("edited template not used: %q", body)
	}

	// Broken template: 500, logged, counted; fixed again: served.
	writeFile(t, path, "#!ipxe\n{{.Nope")
	resp, body = e.get("/ipxe/" + macN003)
	wantCode(t, resp, body, http.StatusInternalServerError)
	if !strings.Contains(e.logs.String(), "custom.ipxe") {
		t.Errorf("log does not name the template:\n%s", e.logs.String())
	}
	// Execution error (unknown field).
	writeFile(t, path, "#!ipxe\n{{.Nope}}\n")
	resp, body = e.get("/ipxe/" + macN003)
	wantCode(t, resp, body, http.StatusInternalServerError)
	if strings.Contains(string(body), "#!ipxe") {
		t.Errorf("half-rendered script sent: %q", body)
	}
}

// fakePeers is the server list shared.go gets from etcd.
type fakePeers struct {
	mu   sync.Mutex
	list []string
}

func (p *fakePeers) Servers() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.list...)
}

func (p *fakePeers) set(list ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = list
}

func TestIPXEFallbackServers(t *testing.T) {
	e := newEnv(t, false)
	peers := &fakePeers{}
	// This server (10.0.2.1:9873) is listed too, as shared.go lists it; an
	// address that could inject iPXE commands is dropped.
	peers.set("10.0.2.2:9873", "10.0.2.1:9873", "10.0.2.3:9873 && shell", "10.0.2.4:${x}")
	e.h.peers = peers
	_, body := e.get("/ipxe/" + macN002)
	golden(t, "ipxe_two_servers", body)
	s := string(body)
	for _, want := range []string{
		"kernel --name kernel http://10.0.2.1:9873/kernel/" + macN002 + " && goto kernel_ok ||\n" +
			"kernel --name kernel http://10.0.2.2:9873/kernel/" + macN002 + " && goto kernel_ok ||\nset wwlabel kernel && set wwhat kernel ||\ngoto ww_retry",
		"initrd --name image.img.gz http://10.0.2.2:9873/image/" + macN002 + " && goto image_ok ||",
		"initrd --name system.img.gz http://10.0.2.2:9873/overlay/system/" + macN002 + " && goto system_ok ||",
		"initrd --name runtime.img.gz http://10.0.2.2:9873/overlay/runtime/" + macN002 + " && goto runtime_ok ||",
		" wwserver=10.0.2.1:9873,10.0.2.2:9873 ",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	for _, bad := range []string{"shell", "${x}", "10.0.2.3", "10.0.2.4"} {
		if strings.Contains(s, bad) {
			t.Errorf("script contains %q from a bad peer address:\n%s", bad, s)
		}
	}
	// The rendered script is cached per server list: a server leaving
	// changes it back to the single-server script.
	peers.set("10.0.2.1:9873")
	_, body = e.get("/ipxe/" + macN002)
	golden(t, "ipxe_insecure", body)
	peers.set("10.0.2.5:9873")
	_, body = e.get("/ipxe/" + macN002)
	if !strings.Contains(string(body), "wwserver=10.0.2.1:9873,10.0.2.5:9873 ") {
		t.Errorf("script after a membership change does not name the new server:\n%s", body)
	}
}

// TestServersPerSnapshot: a server without peers makes its list once per
// config snapshot, and a new snapshot (a changed address) gets its own.
func TestServersPerSnapshot(t *testing.T) {
	h := &Handler{}
	a := &config.Snapshot{Gen: 1, Server: &config.Server{Address: "10.0.2.1", Port: 9873}}
	b := &config.Snapshot{Gen: 2, Server: &config.Server{Address: "10.0.9.9", Port: 9873}}
	first := h.servers(a)
	if !slices.Equal(first, []string{"10.0.2.1:9873"}) {
		t.Fatalf("servers = %q", first)
	}
	if again := h.servers(a); &again[0] != &first[0] {
		t.Error("the same snapshot made its list again")
	}
	if got := h.servers(b); !slices.Equal(got, []string{"10.0.9.9:9873"}) {
		t.Errorf("after a new snapshot: servers = %q", got)
	}
}
