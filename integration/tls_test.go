package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/tlscert"
	"github.com/wwcluster/ww/tools/lab"
)

// TestTLSHeartbeats: with [tls] enabled a booted node's wwclient posts its
// heartbeats and pulls its runtime overlay over HTTPS, trusting the CA its
// system overlay pinned: the node reaches RUNTIME_OVERLAY and heartbeats
// while plain HTTP would be refused (no TLS_REQUIRED refusal is counted
// until the test asks over plain HTTP itself).
func TestTLSHeartbeats(t *testing.T) {
	t.Parallel()
	n1 := lab.LabNode(1)
	e := newEnvWith(t, 5*time.Minute, envOptions{Tree: lab.TreeOptions{Nodes: []lab.Node{n1}, TLS: true}})
	vm := e.startVM(lab.VMOptions{Name: n1.Name, MAC: n1.MAC, Firmware: lab.BIOS})
	e.waitBooted(vm, n1.Name)
	e.waitRuntime(n1.Name)

	refusals := func() string {
		resp, err := e.lab.HTTPClient().Get(e.lab.ServerURL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, `wwserver_http_refusals_total{reason="TLS_REQUIRED"}`) {
				return l
			}
		}
		return "(no TLS_REQUIRED counter)"
	}
	if r := refusals(); !strings.HasSuffix(r, " 0") {
		t.Errorf("the node asked over plain HTTP: %s", r)
	}
	resp, err := e.lab.PrivilegedHTTPClient().Get(e.lab.ServerURL() + "/overlay/runtime/" + n1.MAC)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "only over HTTPS") {
		t.Errorf("plain runtime overlay: %d %s", resp.StatusCode, b)
	}
	if r := refusals(); !strings.HasSuffix(r, " 1") {
		t.Errorf("after one plain request: %s", r)
	}

	// The server answers HTTPS with a certificate the tree's pin verifies.
	pem, err := os.ReadFile(filepath.Join(e.lab.TreeDir, "overlays/wwinit", tlscert.PinInImage))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in the pin")
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: e.lab.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
	resp, err = c.Get(fmt.Sprintf("https://%s:%d/healthz", e.lab.ServerIP, config.DefaultTLSPort))
	if err != nil {
		t.Fatalf("HTTPS with the pin: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HTTPS /healthz: %d", resp.StatusCode)
	}
}
