package provision

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStatusRoute(t *testing.T) {
	e := newEnv(t, true)
	e.get("/ipxe/" + macN002)
	resp, body := e.get("/status")
	wantCode(t, resp, body, http.StatusOK)
	if resp.Header.Get("Content-Type") != "application/json" || string(body) != `{"nodes":3,"events":1}` {
		t.Errorf("status: %q %s", resp.Header.Get("Content-Type"), body)
	}
	e.status.mu.Lock()
	iv := e.status.interval
	e.status.mu.Unlock()
	if iv != 60*time.Second {
		t.Errorf("update interval passed to status: %v", iv)
	}
	resp, body = e.do(http.MethodPost, "/status", nil)
	wantCode(t, resp, body, http.StatusMethodNotAllowed)
	if resp.Header.Get("Allow") == "" {
		t.Error("405 without Allow")
	}
	e.status.mu.Lock()
	e.status.jsonErr = errBoom
	e.status.mu.Unlock()
	resp, body = e.get("/status")
	wantCode(t, resp, body, http.StatusInternalServerError)
}

func TestHealthz(t *testing.T) {
	e := newEnv(t, true)
	resp, body := e.get("/healthz")
	wantCode(t, resp, body, http.StatusOK)
	if string(body) != "ok\n" {
		t.Errorf("healthz %q", body)
	}
	err := errors.New("nodes.toml:3: nodes.x.image: bad")
	e.cfg.err.Store(&err)
	resp, body = e.get("/healthz")
	wantCode(t, resp, body, http.StatusServiceUnavailable)
	if !strings.HasPrefix(string(body), "degraded:") || !strings.Contains(string(body), "nodes.toml:3") {
		t.Errorf("healthz %q", body)
	}
	// Still serving.
	resp, body = e.get("/ipxe/" + macN002)
	wantCode(t, resp, body, http.StatusOK)

	// A service's check adds its reason; a healthy one adds nothing.
	e.cfg.err.Store(nil)
	e.h.AddHealthCheck(func() (bool, string) { return true, "" })
	resp, body = e.get("/healthz")
	wantCode(t, resp, body, http.StatusOK)
	e.h.AddHealthCheck(func() (bool, string) { return false, "dhcp: leases lost: leases.json corrupt" })
	resp, body = e.get("/healthz")
	wantCode(t, resp, body, http.StatusServiceUnavailable)
	if string(body) != "degraded: dhcp: leases lost: leases.json corrupt\n" {
		t.Errorf("healthz with a failing check: %q", body)
	}
}

func TestIPXEBin(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	writeFile(t, outside, "secret")
	writeFile(t, filepath.Join(dir, "snponly.efi"), "EFI-BINARY")
	writeFile(t, filepath.Join(dir, "qemu", "x.rom"), "ROM")
	if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("snponly.efi", filepath.Join(dir, "ipxe.efi")); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, true)
	cfg := newFakeConfig(t, true, "[tftp]\ndir = \""+dir+"\"\n")
	e.cfg.snap.Store(cfg.snap.Load())

	for path, want := range map[string]string{
		"/ipxe-bin/snponly.efi": "EFI-BINARY", "/ipxe-bin/qemu/x.rom": "ROM", "/ipxe-bin/ipxe.efi": "EFI-BINARY",
		"/ipxe-bin//snponly.efi": "EFI-BINARY", // shim's next stage under UEFI HTTP boot: no redirect
		"/ipxe-bin/qemu//x.rom":  "ROM",
	} {
		resp, body := e.get(path)
		wantCode(t, resp, body, http.StatusOK)
		if string(body) != want {
			t.Errorf("%s: %q", path, body)
		}
	}
	resp, body := e.get("/ipxe-bin/snponly.efi", "Range", "bytes=0-2")
	wantCode(t, resp, body, http.StatusPartialContent)
	for _, path := range []string{"/ipxe-bin/escape", "/ipxe-bin/qemu", "/ipxe-bin/missing", "/ipxe-bin/qemu/..%2f..%2fsecret",
		"/ipxe-bin//..%2f..%2fsecret", "/ipxe-bin//qemu//..//..//escape"} {
		resp, body := e.get(path)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d %q", path, resp.StatusCode, body)
		}
		if strings.Contains(string(body), "secret") {
			t.Errorf("%s: escaped the directory", path)
		}
	}
}

func TestNewHTTPServer(t *testing.T) {
	s := NewHTTPServer(http.NotFoundHandler(), nil)
	if s.ReadHeaderTimeout == 0 || s.ReadTimeout == 0 || s.WriteTimeout == 0 || s.IdleTimeout == 0 || s.MaxHeaderBytes == 0 {
		t.Errorf("server limits unset: %+v", s)
	}
}

func TestNewRequiresParts(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without parts succeeded")
	}
}
