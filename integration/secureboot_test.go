package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/pesign"
	"github.com/wwcluster/ww/tools/lab"
)

// secureBootFiles returns Debian's signed shim and GRUB (make bootloaders:
// WW_SECUREBOOT, default ../build/secureboot) and checks the Secure Boot
// firmware is there.
func secureBootFiles(t *testing.T) (shim, grub string) {
	t.Helper()
	dir := envOr("WW_SECUREBOOT", "../build/secureboot")
	shim, grub = filepath.Join(dir, "shimx64.efi.signed"), filepath.Join(dir, "grubnetx64.efi.signed")
	for _, f := range []string{shim, grub} {
		if _, err := os.Stat(f); err != nil {
			unavailable(t, err)
		}
	}
	shim, _ = filepath.Abs(shim)
	grub, _ = filepath.Abs(grub)
	p, err := lab.FindPaths(envOr("WW_BIN", "../bin"), envOr("WW_IMAGE", "../build/image"))
	if err == nil && p.OVMFSecureCode == "" {
		unavailable(t, os.ErrNotExist)
	}
	return shim, grub
}

// TestSecureBootGRUB: OVMF with Secure Boot enforcing (Microsoft's keys
// enrolled) -> its own PXE, DHCP arch 7 -> wwserver hands a bootloader =
// "grub" node shimx64.efi (Debian's, signed by Microsoft) over TFTP -> shim
// fetches grubx64.efi (Debian's signed grubnetx64) -> GRUB reads
// /grub/grub.cfg (made by wwserver), then /grub/MAC, then the signed
// kernel and the initrds, all over TFTP -> the kernel runs with Secure
// Boot enabled -> the node boots and wwclient heartbeats.
//
// The node boots two-stage, the default (no boot key is written): GRUB loads the signed
// kernel, its network drivers (modules/MAC) and the overlays over TFTP and
// passes wwimage=; wwclient, as /init, fetches the chunked image over HTTP
// (Debian's signed GRUB has no http: the large part of the boot leaves
// TFTP).
func TestSecureBootGRUB(t *testing.T) {
	t.Parallel()
	secureBootGRUB(t, "")
}

// TestSecureBootGRUBInitrd: the same with boot = "initrd" (the image as
// one initrd over GRUB's TFTP). One more Secure Boot VM under TCG: run by
// make test-arm64 (with the other GRUB boots), not make test.
func TestSecureBootGRUBInitrd(t *testing.T) {
	if os.Getenv("WW_ARM64") != "1" {
		t.Skip("GRUB single-stage boot (one more TCG VM): run by make test-arm64")
	}
	t.Parallel()
	secureBootGRUB(t, "initrd")
}

func secureBootGRUB(t *testing.T, boot string) {
	shim, grub := secureBootFiles(t)
	n := lab.LabNode(1)
	n.Bootloader = "grub"
	e := newEnvWith(t, 15*time.Minute, envOptions{Tree: lab.TreeOptions{Nodes: []lab.Node{n}, Shim: shim, GRUB: grub, Boot: boot}})
	vm := e.startVM(lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: lab.UEFI, SecureBoot: true})
	e.waitBooted(vm, n.Name)
	e.waitRuntime(n.Name)
	console := vm.SerialTail(100000)
	for _, want := range []string{
		"NBP filename is shimx64.efi",        // the firmware's PXE got the shim from DHCP
		"Fetching Netboot Image grubx64.efi", // shim asked for GRUB next to it
		"wwserver: booting " + n.Name,        // GRUB ran the node's config
		"Secure boot enabled",                // the kernel: secureboot: Secure boot enabled
	} {
		if !strings.Contains(console, want) {
			t.Errorf("serial console does not show %q", want)
		}
	}
	server := lab.Tail(e.lab.ServerLog(), 100000)
	twoStage := boot != "initrd" // two-stage is the default
	image, notImage := "image/"+n.MAC, "modules/"+n.MAC
	if twoStage {
		image, notImage = notImage, image
	}
	for _, want := range []string{"grubx64.efi", "grub/grub.cfg", "grub/" + n.MAC, "kernel/" + n.MAC, image, "overlay/system/" + n.MAC} {
		if !tftpSent(server, want) {
			t.Errorf("wwserver log has no TFTP transfer of %q", want)
		}
	}
	if tftpSent(server, "snponly.efi") {
		t.Errorf("the node was handed iPXE")
	}
	if tftpSent(server, notImage) {
		t.Errorf("boot %q: GRUB fetched %s", boot, notImage)
	}
	if twoStage {
		for _, want := range []string{"wwimage=", "wwinit: two-stage boot: fetching image", "wwinit: image unpacked:"} {
			if !strings.Contains(console, want) {
				t.Errorf("serial console does not show %q", want)
			}
		}
		if m := metrics(t, e); !strings.Contains(m, `code="200",stage="chunk"`) {
			t.Errorf("no chunk served over HTTP:\n%s", m)
		}
	}
}

// tftpSent reports whether the server log has a completed TFTP transfer of
// a file whose requested name ends with name (GRUB asks for /grub/…).
func tftpSent(log, name string) bool {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "tftp: sent") && (strings.Contains(l, "file="+name+" ") || strings.Contains(l, "file=/"+name+" ")) {
			return true
		}
	}
	return false
}

// TestSecureBootUnsignedGRUBRefused: the same chain with GRUB's signature
// stripped: shim refuses it (Security Violation), so GRUB never asks for
// its config and nothing boots.
func TestSecureBootUnsignedGRUBRefused(t *testing.T) {
	t.Parallel()
	shim, grub := secureBootFiles(t)
	n := lab.LabNode(1)
	n.Bootloader = "grub"
	data, err := os.ReadFile(grub)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pesign.Strip(data)
	if err != nil {
		t.Fatal(err)
	}
	unsigned := filepath.Join(t.TempDir(), "grubnetx64.efi.unsigned")
	if err := os.WriteFile(unsigned, out, 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, 10*time.Minute, envOptions{Tree: lab.TreeOptions{Nodes: []lab.Node{n}, Shim: shim, GRUB: unsigned}})
	vm := e.startVM(lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: lab.UEFI, SecureBoot: true})
	line, err := vm.WaitForLine(e.ctx, "Security Violation")
	if err != nil {
		t.Fatalf("shim did not refuse the unsigned GRUB: %v", err)
	}
	t.Logf("%s: refused %s after QEMU started: %q", vm.Name, time.Since(vm.Started).Round(time.Second),
		strings.Join(strings.Fields(stripANSI(line)), " "))
	// GRUB would have asked for grub/grub.cfg before anything else; it
	// never ran, so nothing past grubx64.efi was asked for.
	server := lab.Tail(e.lab.ServerLog(), 100000)
	if !tftpSent(server, "grubx64.efi") {
		t.Errorf("shim never fetched grubx64.efi")
	}
	for _, bad := range []string{"grub/", "kernel/"} {
		if strings.Contains(server, "file="+bad) || strings.Contains(server, "file=/"+bad) {
			t.Errorf("the unsigned GRUB ran: server log has a TFTP request of %q", bad)
		}
	}
	if strings.Contains(vm.SerialTail(100000), "booted: node") {
		t.Errorf("the node booted with an unsigned GRUB")
	}
	st, err := e.lab.Status(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	ns, ok := st.Node(n.Name)
	if !ok || ns.Stage != "TFTP" {
		t.Errorf("status of %s: %+v; want stage TFTP (shim's downloads, never GRUB)", n.Name, ns)
	}
}

// stripANSI drops terminal escape sequences (shim draws a dialog box).
func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b {
			for i++; i < len(s) && !(s[i] >= 'A' && s[i] <= 'Z' || s[i] >= 'a' && s[i] <= 'z'); i++ {
			}
			continue
		}
		if s[i] >= 0x20 && s[i] < 0x7f {
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
