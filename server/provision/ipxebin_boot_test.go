package provision

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

// TestIPXEBinConfiguredBootFile: Debian 12's ipxe.efi is a symlink out of
// /usr/lib/ipxe (to /boot/ipxe.efi). UEFI HTTP boot fetches
// /ipxe-bin/<http_boot_file>: a configured boot file is served through its
// symlink; other names stay confined to the directory.
func TestIPXEBinConfiguredBootFile(t *testing.T) {
	root, dir, boot := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(boot, "ipxe.efi"), "IPXE-EFI")
	writeFile(t, filepath.Join(boot, "ipxe.lkrn"), "secret")
	for _, name := range []string{"ipxe.efi", "ipxe.lkrn"} {
		if err := os.Symlink(filepath.Join(boot, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, config.ServerFile), "address = \"10.0.2.1\"\n[tftp]\ndir = \""+dir+"\"\n")
	srv, err := config.LoadServer(filepath.Join(root, config.ServerFile)) // resolves the boot files
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, true)
	e.cfg.snap.Store(&config.Snapshot{Server: srv, Nodes: e.cfg.Fresh().Nodes})
	resp, body := e.get("/ipxe-bin/ipxe.efi")
	wantCode(t, resp, body, http.StatusOK)
	if string(body) != "IPXE-EFI" {
		t.Errorf("ipxe.efi = %q", body)
	}
	resp, body = e.get("/ipxe-bin/ipxe.lkrn") // not a configured boot file
	wantCode(t, resp, body, http.StatusNotFound)
}
