package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

// TestCheckBootFilesAndKernel: check verifies every configured boot file
// (a symlink out of tftp.dir is fine, a missing or non-regular one is not)
// and flags a kernel behind a directory symlink that leaves the image.
func TestCheckBootFilesAndKernel(t *testing.T) {
	dir := initTree(t)
	replacePlaceholderKernel(t, dir)
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
		"grub.grub: " + missing + " (served as grubx64.efi)", "(nodes booting with GRUB: n001)",
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

// TestCheckReportsEveryError: one check run prints every config error of
// wwserver.toml, nodes.toml and nodes.d/*.toml, one file:line: key line each.
func TestCheckReportsEveryError(t *testing.T) {
	dir := initTree(t)
	replacePlaceholderKernel(t, dir)
	edit := func(name, old, new string) {
		t.Helper()
		p := filepath.Join(dir, name)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Replace(string(data), old, new, 1)
		if s == string(data) {
			t.Fatalf("%s has no %q", name, old)
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	edit("wwserver.toml", `update_interval = "60s"`, `update_interval = "1ms"`)
	edit("wwserver.toml", "workers = 0", "workers = 2000")
	edit("nodes.toml", `hwaddr = "52:54:00:00:00:02"`, `hwaddr = "52:54:00:00:00"`)
	edit("nodes.toml", `root = "tmpfs"`, `root = "nfs"`)
	if err := os.MkdirAll(filepath.Join(dir, "nodes.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nodes.d", "extra.toml"), []byte("[nodes.x1]\nimage = \"default\"\ncolour = \"red\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", dir}, &stdout, &stderr); code != 1 {
		t.Errorf("check exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	srvText, _ := os.ReadFile(filepath.Join(dir, "wwserver.toml"))
	wants := []string{
		fmt.Sprintf("wwserver.toml:%d: update_interval: must be at least 1s", config.KeyLine(srvText, "update_interval")),
		"wwserver.toml:", "dhcp.workers: must be 1..1024, got 2000",
		"nodes.toml:", "nodes.n001.root: must be", "nodes.n002.root: must be",
		"nodes.n002.network.eth0.hwaddr: ",
		"nodes.d/extra.toml:3: nodes.x1.colour: unknown key",
	}
	for _, w := range wants {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("check output lacks %q:\n%s", w, stderr.String())
		}
	}
	if len(lines) != 6 {
		t.Errorf("%d lines, want 6 (2 + 3 + 1):\n%s", len(lines), stderr.String())
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, dir+"/") || strings.Count(l, ":") < 3 {
			t.Errorf("not file:line: key: reason: %q", l)
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q", stdout.String())
	}
}

// TestCheckGroupsNodes: nodes with the same problem make one line naming
// them all, not one line each.
func TestCheckGroupsNodes(t *testing.T) {
	dir := initTree(t)
	replacePlaceholderKernel(t, dir)
	var out bytes.Buffer
	if code := run([]string{"node", "add", "c[001-300]", "--root", dir}, &out, &out); code != 0 {
		t.Fatalf("node add: %s", out.String())
	}
	out.Reset()
	if code := run([]string{"check", dir}, &out, &out); code != 1 {
		t.Errorf("check exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := "nodes.d/managed.toml: nodes.c001.network: no device has a hwaddr, so the node cannot PXE boot (300 nodes: c[001-300])"
	if len(lines) != 1 || !strings.HasSuffix(lines[0], want) {
		t.Errorf("check output:\n%s\nwant one line ending %q", out.String(), want)
	}
}
