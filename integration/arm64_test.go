package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/overlays"
	"github.com/wwcluster/ww/tools/lab"
)

// arm64Inputs are what an arm64 boot needs besides the lab: Debian's
// arm64 shim and GRUB (make bootloaders), the arm64 lab image (make
// image-arm64) and wwclient built for arm64 (make build: bin/arm64).
type arm64Inputs struct{ shim, grub, image, client string }

// arm64Prereqs skips unless WW_ARM64=1 (make test-arm64 sets it) or, for
// the one arm64 boot make test runs (inMakeTest), WW_ARM64_IMAGE is set
// (make integration sets it); then it finds the inputs: missing ones fail
// the test.
func arm64Prereqs(t *testing.T, inMakeTest bool) arm64Inputs {
	t.Helper()
	if os.Getenv("WW_ARM64") != "1" && !(inMakeTest && os.Getenv("WW_ARM64_IMAGE") != "") {
		t.Skip("arm64 QEMU boot (TCG, minutes): run by make test-arm64")
	}
	sb := envOr("WW_SECUREBOOT", "../build/secureboot")
	in := arm64Inputs{
		shim:   filepath.Join(sb, "shimaa64.efi.signed"),
		grub:   filepath.Join(sb, "grubnetaa64.efi.signed"),
		image:  envOr("WW_ARM64_IMAGE", "../build/image-arm64"),
		client: filepath.Join(envOr("WW_BIN", "../bin"), "arm64", "wwclient"),
	}
	for _, f := range []*string{&in.shim, &in.grub, &in.image, &in.client} {
		a, err := filepath.Abs(*f)
		if err == nil {
			*f = a
		}
		if _, err := os.Stat(*f); err != nil {
			t.Fatalf("arm64 input missing (make test-arm64 builds it): %v", err)
		}
	}
	p := paths(t, true)
	if p.QEMUARM64 == "" {
		t.Fatal("qemu-system-aarch64 or /usr/share/qemu-efi-aarch64/QEMU_EFI.fd missing (apt-get install qemu-system-arm qemu-efi-aarch64)")
	}
	return in
}

// arm64Tree is the lab tree of arm64 nodes: the arm64 image imported with
// --platform linux/arm64, the arm64 shim and GRUB, the serial console of
// QEMU virt (ttyAMA0), and the wwinit-arm64 overlay laid over wwinit: the
// arm64 wwclient at the path wwinit has the server's own.
func arm64Tree(in arm64Inputs, nodes []lab.Node, boot string) envOptions {
	return envOptions{
		Image: in.image,
		Tree: lab.TreeOptions{
			Nodes: nodes, Boot: boot, Arch: "arm64", ShimARM64: in.shim, GRUBARM64: in.grub,
			KernelArgs:     []string{"console=ttyAMA0", "panic=-1"},
			SystemOverlays: []string{"wwinit", "wwinit-arm64"},
		},
		Setup: func(tree string) error {
			dst := filepath.Join(tree, "overlays", "wwinit-arm64", filepath.FromSlash(overlays.ClientBinary))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			data, err := os.ReadFile(in.client)
			if err != nil {
				return err
			}
			return os.WriteFile(dst, data, 0o755)
		},
	}
}

// TestARM64GRUBTwoStage: an arm64 QEMU virt machine (cortex-a57, EDK2,
// TCG) PXE-boots from wwserver: DHCP arch 11 -> shimaa64.efi over TFTP ->
// grubaa64.efi (Debian's signed grubnetaa64) -> /grub/grub.cfg ->
// /grub/MAC -> the arm64 kernel, its network drivers and the overlays over
// TFTP -> wwclient (arm64) as /init brings the NIC up and fetches the
// chunked image over HTTP -> booted, heartbeats, RUNTIME_OVERLAY.
func TestARM64GRUBTwoStage(t *testing.T) {
	in := arm64Prereqs(t, true)
	n := lab.LabNode(1)
	n.Bootloader = "grub"
	e := newEnvWith(t, 20*time.Minute, arm64Tree(in, []lab.Node{n}, "twostage"))
	vm := e.startVM(lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: lab.ARM64})
	d := e.waitBooted(vm, n.Name)
	e.waitRuntime(n.Name)
	t.Logf("arm64 boot (QEMU start to booted): %s", d)
	serial := vm.SerialTail(100000)
	for _, want := range []string{
		"wwserver: booting " + n.Name, // GRUB ran the node's config
		"wwimage=",                    // the two-stage command line
		"wwinit: two-stage boot: fetching image",
		"wwinit: image unpacked:",
	} {
		if !strings.Contains(serial, want) {
			t.Errorf("serial console does not show %q", want)
		}
	}
	server := lab.Tail(e.lab.ServerLog(), 100000)
	for _, want := range []string{"shimaa64.efi", "grubaa64.efi", "grub/grub.cfg", "grub/" + n.MAC, "kernel/" + n.MAC,
		"modules/" + n.MAC, "overlay/system/" + n.MAC} {
		if !tftpSent(server, want) {
			t.Errorf("wwserver log has no TFTP transfer of %q", want)
		}
	}
	if tftpSent(server, "image/"+n.MAC) {
		t.Error("GRUB fetched the single-stage image")
	}
	m := metrics(t, e)
	for _, want := range []string{`code="200",stage="chunk"`, `code="200",stage="image-index"`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s (the image did not come over HTTP)", want)
		}
	}
}

// TestARM64WrongArch: an arm64 machine boots a node whose image is the x86
// lab image: GRUB (arm64) reads the node's config, which checks $grub_cpu
// against the image's architecture (from its kernel), says so on the
// console, reports it (status GRUB, sent WRONG_ARCH:arm64) and exits to
// the firmware, without loading the kernel.
func TestARM64WrongArch(t *testing.T) {
	in := arm64Prereqs(t, false)
	n := lab.LabNode(1)
	n.Bootloader = "grub"
	o := arm64Tree(in, []lab.Node{n}, "twostage")
	o.Image, o.Tree.Arch = "", "" // the x86 lab image (WW_IMAGE)
	e := newEnvWith(t, 10*time.Minute, o)
	vm := e.startVM(lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: lab.ARM64})
	line, err := vm.WaitForLine(e.ctx, "this GRUB runs on")
	if err != nil {
		t.Fatalf("no architecture message on the console: %v", err)
	}
	t.Logf("%s: %q %s after QEMU started", vm.Name, strings.TrimSpace(stripANSI(line)), time.Since(vm.Started).Round(time.Second))
	if !strings.Contains(line, `image "default" is amd64, this GRUB runs on arm64`) {
		t.Errorf("console line %q does not name the image's and the machine's architectures", line)
	}
	if _, err := e.lab.WaitStatus(e.ctx, n.Name+" at GRUB, sent WRONG_ARCH:arm64", func(s *lab.Status) bool {
		ns, ok := s.Node(n.Name)
		return ok && ns.Stage == "GRUB" && ns.Sent == "WRONG_ARCH:arm64"
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitForLine(e.ctx, "exiting to the firmware"); err != nil {
		t.Fatal(err)
	}
	if server := lab.Tail(e.lab.ServerLog(), 100000); tftpSent(server, "kernel/"+n.MAC) {
		t.Error("GRUB loaded the kernel of another architecture")
	}
}

// TestARM64HTTPBoot: arm64 UEFI HTTP boot (PXE off, DHCP arch 19 with
// vendor class HTTPClient) gets the arm64 shim as a URL
// (/ipxe-bin/shimaa64.efi, offer with option 60 HTTPClient), and shim
// fetches grubaa64.efi next to it over HTTP: GRUB starts. Debian's signed
// GRUB has no http module, so it cannot read a config from there and
// stays at its prompt: PXE (arch 11) is the arm64 path that boots; this
// checks the part wwserver answers.
func TestARM64HTTPBoot(t *testing.T) {
	in := arm64Prereqs(t, false)
	n := lab.LabNode(1)
	n.Bootloader = "grub"
	e := newEnvWith(t, 10*time.Minute, arm64Tree(in, []lab.Node{n}, "twostage"))
	vm := e.startVM(lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: lab.ARM64HTTP})
	if _, err := vm.WaitForLine(e.ctx, "Welcome to GRUB"); err != nil {
		t.Fatalf("GRUB did not start under UEFI HTTP boot: %v", err)
	}
	t.Logf("%s: GRUB started %s after QEMU started (UEFI HTTP boot)", vm.Name, time.Since(vm.Started).Round(time.Second))
	st, err := e.lab.Status(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The boot URL DHCP handed out (/ipxe-bin/ downloads are not recorded).
	if ns, ok := st.Node(n.Name); !ok || ns.Stage != "DHCP" || !strings.HasSuffix(ns.Sent, "/ipxe-bin/shimaa64.efi") {
		t.Errorf("status of %s: %+v; want DHCP, sent http://…/ipxe-bin/shimaa64.efi", n.Name, ns)
	}
	if m := metrics(t, e); !strings.Contains(m, `code="200",stage="ipxe-bin"`) {
		t.Errorf("no boot file served over HTTP:\n%s", m)
	}
	server := lab.Tail(e.lab.ServerLog(), 100000)
	if tftpSent(server, "shimaa64.efi") || tftpSent(server, "grubaa64.efi") {
		t.Error("the firmware or shim used TFTP, not HTTP boot")
	}
}
