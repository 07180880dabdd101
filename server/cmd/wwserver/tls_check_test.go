package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/tlscert"
)

// TestCheckTLS: with [tls] enabled, check reports a pin that does not
// verify the serving certificate and a missing certificate; tls rotate
// fixes both.
func TestCheckTLS(t *testing.T) {
	dir := initTree(t)
	cfg := filepath.Join(dir, "wwserver.toml")
	b, _ := os.ReadFile(cfg)
	writeTestFile(t, cfg, strings.Replace(string(b), "[tls]\nenabled = false", "[tls]\nenabled = true", 1))
	if out := cli(t, false, "check", dir); strings.Contains(out, "tls") { // (the placeholder image fails check)
		t.Errorf("fresh tree, TLS problems:\n%s", out)
	}
	other := t.TempDir()
	if _, err := tlscert.Create(other, []string{"10.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(filepath.Join(other, tlscert.CAFile))
	pin := filepath.Join(dir, "overlays/wwinit", tlscert.PinInImage)
	writeTestFile(t, pin, string(ca))
	if out := cli(t, false, "check", dir); !strings.Contains(out, "tls.enabled: "+pin+" does not verify the serving certificate") {
		t.Errorf("check with another CA pinned:\n%s", out)
	}
	if err := os.Remove(pin); err != nil {
		t.Fatal(err)
	}
	if out := cli(t, false, "check", dir); !strings.Contains(out, "nodes.n001.system_overlays: tls.enabled, but no system overlay has etc/wwclient/tls-ca.pem") {
		t.Errorf("check without a pin in the system overlay:\n%s", out)
	}
	if err := os.Remove(filepath.Join(dir, tlscert.CertFile)); err != nil {
		t.Fatal(err)
	}
	if out := cli(t, false, "check", dir); !strings.Contains(out, "tls.enabled: ") || !strings.Contains(out, "wwserver tls rotate") {
		t.Errorf("check without a certificate:\n%s", out)
	}
	if out := cli(t, true, "tls", "rotate", dir); !strings.Contains(out, "cross-signed") || !strings.Contains(out, "pin: "+pin) {
		t.Errorf("rotate:\n%s", out)
	}
	if out := cli(t, false, "check", dir); strings.Contains(out, "tls") {
		t.Errorf("after rotate, TLS problems:\n%s", out)
	}
}
