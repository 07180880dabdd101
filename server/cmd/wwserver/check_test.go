package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckBootFilesAndKernel: check verifies every configured boot file
// (a symlink out of tftp.dir is fine, a missing or non-regular one is not)
// and flags a kernel behind a directory symlink that leaves the image.
func TestCheckBootFilesAndKernel(t *testing.T) {
	dir := initTree(t)
	ipxe, boot := t.TempDir(), t.TempDir()
	for name, content := range map[string]string{"undionly.kpxe": "BIOS", "snponly.efi": "EFI"} {
		if err := os.WriteFile(filepath.Join(ipxe, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(boot, "ipxe.efi"), []byte("IPXE"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Debian 12: /usr/lib/ipxe/ipxe.efi -> /boot/ipxe.efi
	if err := os.Symlink(filepath.Join(boot, "ipxe.efi"), filepath.Join(ipxe, "ipxe.efi")); err != nil {
		t.Fatal(err)
	}
	srvFile := filepath.Join(dir, "wwserver.toml")
	data, err := os.ReadFile(srvFile)
	if err != nil {
		t.Fatal(err)
	}
	good := strings.Replace(string(data), `dir = "/usr/lib/ipxe"`, `dir = "`+ipxe+`"`, 1)
	if good == string(data) {
		t.Fatal("init's wwserver.toml has no tftp dir line to replace")
	}
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(srvFile, good)
	var out bytes.Buffer
	if code := run([]string{"check", "--root", dir}, &out, &out); code != 0 {
		t.Fatalf("check of a good tree (ipxe.efi a symlink out of tftp.dir): exit %d: %s", code, out.String())
	}

	// A missing boot file and one that is a directory.
	if err := os.Remove(filepath.Join(ipxe, "snponly.efi")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(ipxe, "arm"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(srvFile, strings.Replace(good, `arm64_file = ""`, `arm64_file = "arm"`, 1))
	// The image's kernel directory is a symlink out of the image.
	bootDir := filepath.Join(dir, "images", initImage, "rootfs", "boot")
	if err := os.RemoveAll(bootDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(boot, bootDir); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"check", "--root", dir}, &out, &out); code != 1 {
		t.Errorf("check exit %d, want 1", code)
	}
	for _, want := range []string{
		"wwserver.toml:", "dhcp.efi_file: boot file \"snponly.efi\"",
		"dhcp.arm64_file: boot file \"arm\"", "not a regular file",
		"nodes.n001.kernel:", "leads out of the image rootfs",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
}

// peImage is a minimal PE32+ (no sections), with an Authenticode
// certificate table when signed: enough for check's signature test.
func peImage(signed bool) []byte {
	b := make([]byte, 0x40+4+20+240)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], 0x40)
	copy(b[0x40:], "PE\x00\x00")
	binary.LittleEndian.PutUint16(b[0x44:], 0x8664)
	binary.LittleEndian.PutUint16(b[0x44+16:], 240)
	opt := 0x40 + 4 + 20
	binary.LittleEndian.PutUint16(b[opt:], 0x20b)
	binary.LittleEndian.PutUint32(b[opt+108:], 16)
	if signed {
		off := len(b)
		cert := make([]byte, 16)
		binary.LittleEndian.PutUint32(cert[0:], 16)
		binary.LittleEndian.PutUint16(cert[4:], 0x0200)
		binary.LittleEndian.PutUint16(cert[6:], 0x0002)
		b = append(b, cert...)
		binary.LittleEndian.PutUint32(b[opt+112+4*8:], uint32(off))
		binary.LittleEndian.PutUint32(b[opt+112+4*8+4:], 16)
	}
	return b
}

// TestCheckGRUBNode: a node booting with GRUB (Secure Boot) needs a signed
// kernel and the [grub] files; nodes booting with iPXE need neither.
func TestCheckGRUBNode(t *testing.T) {
	dir := initTree(t)
	ipxe := t.TempDir()
	for _, name := range []string{"undionly.kpxe", "snponly.efi", "ipxe.efi"} {
		if err := os.WriteFile(filepath.Join(ipxe, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srvFile := filepath.Join(dir, "wwserver.toml")
	data, err := os.ReadFile(srvFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := strings.Replace(string(data), `dir = "/usr/lib/ipxe"`, `dir = "`+ipxe+`"`, 1)
	shim := filepath.Join(t.TempDir(), "shimx64.efi.signed")
	if err := os.WriteFile(shim, peImage(true), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "grubnetx64.efi.signed")
	srv = strings.Replace(srv, `shim = "/usr/lib/shim/shimx64.efi.signed"`, `shim = "`+shim+`"`, 1)
	srv = strings.Replace(srv, `grub = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"`, `grub = "`+missing+`"`, 1)
	if !strings.Contains(srv, missing) || !strings.Contains(srv, shim) {
		t.Fatal("init's wwserver.toml has no [grub] lines to replace")
	}
	if err := os.WriteFile(srvFile, []byte(srv), 0o644); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "images", initImage, "rootfs", "boot", "vmlinuz-0-placeholder")
	if err := os.WriteFile(kernel, peImage(false), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run([]string{"check", "--root", dir}, &out, &out); code != 0 {
		t.Fatalf("iPXE nodes need no signed kernel nor GRUB files: exit %d:\n%s", code, out.String())
	}

	nodesFile := filepath.Join(dir, "nodes.toml")
	nodes, err := os.ReadFile(nodesFile)
	if err != nil {
		t.Fatal(err)
	}
	withGRUB := strings.Replace(string(nodes), "bootloader = \"\"\n", "bootloader = \"grub\"\n", 1)
	if withGRUB == string(nodes) {
		t.Fatal("init's nodes.toml has no bootloader key on n001")
	}
	if err := os.WriteFile(nodesFile, []byte(withGRUB), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"check", "--root", dir}, &out, &out); code != 1 {
		t.Errorf("check exit %d, want 1", code)
	}
	for _, want := range []string{
		"nodes.n001.kernel: kernel vmlinuz-0-placeholder has no Authenticode signature",
		"grub.grub: " + missing + " (served as grubx64.efi)", "(node n001 boots with GRUB)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "n002") {
		t.Errorf("check flags the iPXE node n002:\n%s", out.String())
	}

	// An explicit window with GRUB nodes makes boots take minutes.
	if err := os.WriteFile(srvFile, []byte(strings.Replace(srv, "anticipate = 0", "anticipate = 8", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"check", "--root", dir}, &out, &out); code != 1 || !strings.Contains(out.String(), "tftp.anticipate: 8 with nodes booting with GRUB") {
		t.Errorf("explicit anticipate with GRUB nodes: exit %d:\n%s", code, out.String())
	}
	if err := os.WriteFile(srvFile, []byte(srv), 0o644); err != nil {
		t.Fatal(err)
	}

	// A signed kernel and the GRUB file in place: clean again.
	if err := os.WriteFile(kernel, peImage(true), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(missing, peImage(true), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"check", "--root", dir}, &out, &out); code != 0 {
		t.Errorf("check with a signed kernel: exit %d:\n%s", code, out.String())
	}
}
