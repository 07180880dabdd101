package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/tlscert"
	"github.com/wwcluster/ww/wwclient/apply"
)

// tlsNode is a node's view of the served tree: its system overlay
// unpacked, as the kernel would at boot.
type tlsNode struct {
	dir string // the unpacked system overlay
	cfg string // its wwclient.toml, pointing at its own pin
	pin []byte
}

// bootSystemOverlay fetches and unpacks the node's system overlay and
// prepares its wwclient.toml to be used from there (tls_ca = the pin it
// carries: the path on a node is /etc/wwclient/tls-ca.pem).
func bootSystemOverlay(t *testing.T, base, mac string) tlsNode {
	t.Helper()
	resp, err := http.Get(base + "/overlay/system/" + mac)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("system overlay: %d", resp.StatusCode)
	}
	dir := t.TempDir()
	if _, err := apply.Apply(dir, resp.Body, apply.Options{NoOwner: true}); err != nil {
		t.Fatal(err)
	}
	n := tlsNode{dir: dir, cfg: filepath.Join(dir, "wwclient.toml")}
	pinPath := filepath.Join(dir, tlscert.PinInImage)
	if n.pin, err = os.ReadFile(pinPath); err != nil {
		t.Fatalf("system overlay has no pin: %v", err)
	}
	rendered, err := os.ReadFile(filepath.Join(dir, "etc/wwclient/wwclient.toml"))
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, n.cfg, fmt.Sprintf("tls_ca = %q\n%s", pinPath, rendered))
	return n
}

// runAgent runs wwclient --once with cfg into nodeRoot.
func runAgent(t *testing.T, wwclient, cfg, nodeRoot string) (string, error) {
	t.Helper()
	empty := filepath.Join(t.TempDir(), "cmdline")
	writeTestFile(t, empty, "")
	out, err := exec.Command(wwclient, "--once", "--root", nodeRoot, "--config", cfg,
		"--cmdline", empty, "--asset-tag-file", "").CombinedOutput()
	return string(out), err
}

// TestServeTLS: with [tls] enabled a real wwclient gets its runtime overlay
// and posts its heartbeat over HTTPS only, trusting only the CA pinned in
// its system overlay; plain HTTP is refused; another server's CA is
// refused by wwclient; after `wwserver tls rotate` (server running) a node
// on the old pin and one that took the new system overlay both work.
func TestServeTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs a server")
	}
	wwserver, wwclient := sharedBinaries(t)
	root := filepath.Join(t.TempDir(), "tree")
	port, tport := freePort(t), freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	runCLI(t, wwserver, "init", root, "--wwclient", wwclient, "--image-from", fakeImage(t),
		"--address", "127.0.0.1", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	root0 := os.Geteuid() == 0 // secure mode needs root's privileged source ports
	cfgPath := filepath.Join(root, "wwserver.toml")
	cfg, _ := os.ReadFile(cfgPath)
	text := strings.Replace(string(cfg), "[tls]\nenabled = false\nlisten = \":9874\"",
		fmt.Sprintf("[tls]\nenabled = true\nlisten = \"127.0.0.1:%d\"", tport), 1)
	text = strings.Replace(text, "secure = true", fmt.Sprintf("secure = %v", root0), 1)
	if !strings.Contains(text, "enabled = true\nlisten = \"127.0.0.1:") {
		t.Fatal("init's wwserver.toml has no [tls] section to enable")
	}
	writeTestFile(t, cfgPath, text)
	writeTestFile(t, filepath.Join(root, "overlays/generic/etc/tls-marker"), "private\n")
	srv := startServer(t, wwserver, root, base)
	const mac = "52:54:00:00:00:01"

	// Boot stages stay plain; the script leaves the runtime overlay out.
	if s := fetch(t, http.DefaultClient, "GET", base+"/ipxe/"+mac); s.code != 200 || strings.Contains(string(s.body), "/overlay/runtime/") {
		t.Errorf("iPXE script with TLS on: %d\n%s", s.code, s.body)
	}
	node := bootSystemOverlay(t, base, mac)
	if caPEM, _ := os.ReadFile(filepath.Join(root, tlscert.CAFile)); !bytes.Equal(node.pin, caPEM) {
		t.Error("the system overlay's pin is not the tree's CA")
	}
	if cfg, _ := os.ReadFile(node.cfg); !strings.Contains(string(cfg), fmt.Sprintf("tls_port = %d", tport)) {
		t.Errorf("wwclient.toml lacks tls_port:\n%s", cfg)
	}

	nodeRoot := t.TempDir()
	if out, err := runAgent(t, wwclient, node.cfg, nodeRoot); err != nil {
		t.Fatalf("wwclient over TLS: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(nodeRoot, "etc/tls-marker")); err != nil || string(b) != "private\n" {
		t.Errorf("runtime overlay not applied: %q %v", b, err)
	}
	if st := fetch(t, http.DefaultClient, "GET", base+"/status"); !strings.Contains(string(st.body), "RUNTIME_OVERLAY") || !strings.Contains(string(st.body), `"boot_id"`) {
		t.Errorf("status after the TLS sync: %s", st.body)
	}

	// Plain HTTP: refused with the reason, from a privileged port too.
	plain := http.DefaultClient
	if root0 {
		plain = rootClient()
	}
	for _, req := range []struct{ method, path string }{{"GET", "/overlay/runtime/"}, {"POST", "/heartbeat/"}} {
		r := fetch(t, plain, req.method, base+req.path+mac)
		if r.code != http.StatusForbidden || !strings.Contains(string(r.body), fmt.Sprintf("only over HTTPS (port %d)", tport)) {
			t.Errorf("plain %s %s: %d %s", req.method, req.path, r.code, r.body)
		}
	}
	if m := fetch(t, http.DefaultClient, "GET", base+"/metrics"); !strings.Contains(string(m.body), `wwserver_http_refusals_total{reason="TLS_REQUIRED"} 2`) {
		t.Error("refusals not counted as TLS_REQUIRED")
	}

	// Another server's CA as the pin: wwclient refuses the server.
	other := t.TempDir()
	if _, err := tlscert.Create(other, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "wwclient.toml")
	cfgText, _ := os.ReadFile(node.cfg)
	writeTestFile(t, wrong, strings.Replace(string(cfgText), filepath.Join(node.dir, tlscert.PinInImage), filepath.Join(other, tlscert.CAFile), 1))
	if out, err := runAgent(t, wwclient, wrong, t.TempDir()); err == nil || !strings.Contains(out, "certificate signed by unknown authority") {
		t.Errorf("wwclient with another server's CA: %v\n%s", err, out)
	}

	// Rotation while serving.
	if out := runCLI(t, wwserver, "tls", "rotate", root); !strings.Contains(out, "cross-signed by the previous CA") {
		t.Errorf("tls rotate:\n%s", out)
	}
	if out, err := runAgent(t, wwclient, node.cfg, nodeRoot); err != nil {
		t.Errorf("wwclient on the old pin after rotate: %v\n%s", err, out)
	}
	rotated := bootSystemOverlay(t, base, mac)
	if bytes.Equal(rotated.pin, node.pin) {
		t.Fatal("the system overlay still carries the old pin after rotate")
	}
	if b, _ := os.ReadFile(filepath.Join(nodeRoot, tlscert.PinInImage)); !bytes.Equal(b, rotated.pin) {
		t.Error("the running node did not get the new pin with its runtime overlay")
	}
	if out, err := runAgent(t, wwclient, rotated.cfg, t.TempDir()); err != nil {
		t.Errorf("wwclient with the new system overlay: %v\n%s", err, out)
	}
	srv.stop()
}
