package provision

import (
	"io"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestIPXEBinFIFO: a FIFO in the iPXE directory is answered 404 at once;
// opening it would wait for a writer and hold the request (and shutdown).
func TestIPXEBinFIFO(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "snponly.efi"), "EFI-BINARY")
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, true)
	cfg := newFakeConfig(t, true, "[tftp]\ndir = \""+dir+"\"\n")
	e.cfg.snap.Store(cfg.snap.Load())

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(e.srv.URL + "/ipxe-bin/fifo")
	if err != nil {
		t.Fatalf("GET /ipxe-bin/fifo: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ipxe-bin/fifo: %d %q, want 404", resp.StatusCode, body)
	}
	resp, body = e.get("/ipxe-bin/snponly.efi")
	wantCode(t, resp, body, http.StatusOK)
}
