package tftp

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestConfiguredBootFileThroughSymlink: Debian 12's /usr/lib/ipxe/ipxe.efi
// is a symlink to /boot/ipxe.efi. The boot files wwserver.toml names are
// served through such links (trusted config); other names stay confined.
func TestConfiguredBootFileThroughSymlink(t *testing.T) {
	e := startLoopback(t, Options{}, "10.201.0.11")
	outside := t.TempDir()
	data := randomFile(t, filepath.Join(outside, "ipxe.efi"), 5000)
	randomFile(t, filepath.Join(outside, "other.efi"), 10)
	for _, name := range []string{"ipxe.efi", "other.efi"} {
		if err := os.Symlink(filepath.Join(outside, name), filepath.Join(e.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.store.Reload(); err != nil { // boot files resolve when the config loads
		t.Fatal(err)
	}
	wt, err := e.client(t).Receive("ipxe.efi", "octet") // dhcp.http_boot_file's default
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("ipxe.efi through its symlink: %v (%d bytes)", err, buf.Len())
	}
	wt, err = e.client(t).Receive("other.efi", "octet")
	if err == nil {
		_, err = wt.WriteTo(io.Discard)
	}
	if err == nil {
		t.Error("a symlink out of the directory that no config names was served")
	}
}
