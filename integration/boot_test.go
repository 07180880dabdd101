package integration

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/tools/lab"
)

// TestImageDirectBoot boots the lab image with QEMU -kernel/-initrd and a
// check-only /init: the image itself (kernel, busybox init, rcS, NIC modules)
// works, independently of wwserver and wwclient.
func TestImageDirectBoot(t *testing.T) {
	t.Parallel()
	p := paths(t, false)
	ctx, cancel := context.WithTimeout(rootCtx, 3*time.Minute)
	defer cancel()
	l, err := lab.New(ctx, lab.Options{Paths: p, Logger: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, lab: l, single: true}
	t.Cleanup(func() {
		if t.Failed() {
			for _, vm := range e.vms {
				t.Logf("---- %s serial console (tail) ----\n%s", vm.Name, vm.SerialTail(40))
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	initrd := filepath.Join(l.Dir, "direct.initrd.gz")
	if err := lab.WriteInitrd(initrd, p.Image, map[string][]byte{"init": lab.CheckInit("direct")}); err != nil {
		t.Fatal(err)
	}
	vm := e.startVM(lab.VMOptions{Name: "direct", MAC: "52:54:00:99:dd:01", Kernel: p.Kernel, Initrd: initrd,
		Append: strings.Join(lab.DefaultKernelArgs(), " "), NoTap: true, MemoryMB: 512,
		// the common NICs of QEMU and real hardware need drivers in the image
		ExtraNICs: []string{"e1000", "rtl8139", "e1000e", "vmxnet3"}})
	e.waitBooted(vm, "direct")
	line, err := vm.WaitForLine(ctx, "nics:")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, "eth0") || !strings.Contains(line, "virtio_net") {
		t.Fatalf("the virtio NIC driver did not come up: %q", line)
	}
	for _, want := range []string{"eth4", "e1000 ", "8139too", "e1000e", "vmxnet3"} {
		if !strings.Contains(line+" ", want) {
			t.Errorf("NIC driver or interface %q missing: %q", want, line)
		}
	}
}

// TestBIOSBoot: SeaBIOS + QEMU's iPXE ROM -> DHCP -> iPXE script -> kernel,
// network drivers, overlays over HTTP -> wwclient (/init) fetches the
// chunked image into the tmpfs root (the default two-stage boot; status
// shows IMAGE with progress) -> /sbin/init. The node reaches
// RUNTIME_OVERLAY and keeps heartbeating.
func TestBIOSBoot(t *testing.T) {
	t.Parallel()
	bootNode(t, lab.BIOS, 5*time.Minute, "[script]") // iPXE (the NIC's option ROM) fetched the per-node script
}

// bootNode boots lab node 1 with firmware fw (two-stage, the default),
// waits until it has booted and reached RUNTIME_OVERLAY, checks the second
// stage (console, progress in status, what was served) and that its serial
// console shows each of want.
func bootNode(t *testing.T, fw lab.Firmware, timeout time.Duration, want ...string) *env {
	t.Helper()
	n := lab.LabNode(1)
	e := newEnv(t, timeout, []lab.Node{n})
	watch := e.watchImage(n.Name)
	vm := e.startVM(lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: fw})
	e.waitBooted(vm, n.Name)
	e.waitRuntime(n.Name)
	e.checkTwoStage(vm, watch)
	for _, w := range want {
		if !strings.Contains(vm.SerialTail(100000), w) {
			t.Errorf("serial console does not show %q", w)
		}
	}
	return e
}

// TestUEFIBoot: OVMF's own PXE (no option ROM) -> DHCP arch 7 -> TFTP
// snponly.efi -> iPXE -> the same path as BIOS.
func TestUEFIBoot(t *testing.T) {
	t.Parallel()
	// It was the firmware's own PXE that fetched snponly.efi (OVMF prints
	// "NBP filename is snponly.efi"), and iPXE then fetched the script.
	bootNode(t, lab.UEFI, 6*time.Minute, "snponly.efi", "[script]")
}

// TestTwoNodesAndUnknown: two nodes boot at once, and a VM with a MAC in no
// node gets the unknown-node script and shows as unknown in status. The
// second node has an asset key: its wwclient must send the SMBIOS asset tag
// to get the runtime overlay and to heartbeat; without the key it is refused.
func TestTwoNodesAndUnknown(t *testing.T) {
	t.Parallel()
	n1, n2 := lab.LabNode(1), lab.LabNode(2)
	n2.AssetKey = "lab-asset-0002"
	e := newEnv(t, 7*time.Minute, []lab.Node{n1, n2})
	vm1 := e.startVM(lab.VMOptions{Name: n1.Name, MAC: n1.MAC, Firmware: lab.BIOS})
	vm2 := e.startVM(lab.VMOptions{Name: n2.Name, MAC: n2.MAC, Firmware: lab.BIOS, AssetTag: n2.AssetKey})
	unk := e.startVM(lab.VMOptions{Name: "unknown", MAC: lab.UnknownMAC, Firmware: lab.BIOS, MemoryMB: 256})

	// The unknown VM gets an address from the pool and the unknown-node
	// iPXE script, never a kernel; it shows up in status as unknown.
	st, err := e.lab.WaitStatus(e.ctx, "unknown MAC "+lab.UnknownMAC+" at IPXE", func(s *lab.Status) bool {
		u, ok := s.UnknownMAC(lab.UnknownMAC)
		return ok && u.Stage == "IPXE"
	})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := st.UnknownMAC(lab.UnknownMAC)
	t.Logf("unknown: %+v", u)
	if line, err := unk.WaitForLine(e.ctx, "[script]"); err != nil {
		t.Fatalf("unknown VM: no iPXE script: %v", err)
	} else {
		t.Logf("unknown VM: %q", line)
	}

	e.waitBooted(vm1, n1.Name)
	e.waitBooted(vm2, n2.Name)
	e.waitRuntime(n1.Name)
	e.waitRuntime(n2.Name) // needs the asset key: wwclient read it from SMBIOS

	// Even from a privileged port on the server host (which the source
	// check lets through), the runtime overlay of a node with an asset key
	// is refused without the key.
	if _, _, err := e.lab.RuntimeOverlay(e.ctx, n2.MAC); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("runtime overlay of %s without its asset key: want 401, got %v", n2.Name, err)
	}

	st, err = e.lab.Status(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.UnknownMAC(n1.MAC); ok {
		t.Errorf("known node %s listed as unknown", n1.MAC)
	}
	u, _ = st.UnknownMAC(lab.UnknownMAC)
	for _, bad := range []string{"KERNEL", "IMAGE", "SYSTEM_OVERLAY", "RUNTIME_OVERLAY"} {
		if u.Stage == bad {
			t.Errorf("unknown MAC reached stage %s", bad)
		}
	}
	if strings.Contains(lab.Tail(unk.SerialLog, 1000), "booted: node") {
		t.Errorf("unknown VM booted an image")
	}
}

// TestRuntimeOverlayUpdate: adding a node to nodes.toml changes the generic
// runtime overlay (/etc/hosts) and the running node applies it within one
// interval: its heartbeat's runtime_etag changes.
func TestRuntimeOverlayUpdate(t *testing.T) {
	t.Parallel()
	n1 := lab.LabNode(1)
	e := newEnv(t, 5*time.Minute, []lab.Node{n1})
	vm := e.startVM(lab.VMOptions{Name: n1.Name, MAC: n1.MAC, Firmware: lab.BIOS})
	e.waitBooted(vm, n1.Name)
	before := e.waitRuntime(n1.Name)
	if before.Heartbeat.RuntimeETag == "" {
		t.Fatalf("heartbeat has no runtime_etag: %+v", before.Heartbeat)
	}

	added := lab.LabNode(7)
	changed := time.Now()
	if err := e.lab.SetNodes([]lab.Node{n1, added}); err != nil {
		t.Fatal(err)
	}
	// Config reload, then the agent's next fetch (one 5 s interval plus
	// jitter), then the heartbeat after it that reports the new ETag: a
	// few intervals at most; 30 s is six.
	wctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	st, err := e.lab.WaitStatus(wctx, n1.Name+" runtime_etag changes", func(s *lab.Status) bool {
		n, ok := s.Node(n1.Name)
		return ok && n.Heartbeat != nil && n.Heartbeat.RuntimeETag != "" && n.Heartbeat.RuntimeETag != before.Heartbeat.RuntimeETag
	})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := st.Node(n1.Name)
	t.Logf("runtime_etag %s -> %s after %s", before.Heartbeat.RuntimeETag, after.Heartbeat.RuntimeETag, time.Since(changed).Round(time.Second))
	if _, ok := st.Node(added.Name); !ok {
		t.Errorf("status does not list the added node %s", added.Name)
	}
	if after.Heartbeat.BootID != before.Heartbeat.BootID {
		t.Errorf("node rebooted (boot_id %s -> %s)", before.Heartbeat.BootID, after.Heartbeat.BootID)
	}

	// What the node reports having applied is the server's current runtime
	// overlay, and that overlay's /etc/hosts has the added node.
	etag, files, err := e.lab.RuntimeOverlay(e.ctx, n1.MAC)
	if err != nil {
		t.Fatal(err)
	}
	if unquote(etag) != unquote(after.Heartbeat.RuntimeETag) {
		t.Errorf("node reports runtime_etag %s, server serves %s", after.Heartbeat.RuntimeETag, etag)
	}
	hosts, ok := files["etc/hosts"]
	if !ok {
		t.Fatalf("runtime overlay has no etc/hosts; files: %v", keys(files))
	}
	if !strings.Contains(string(hosts), added.Name) || !strings.Contains(string(hosts), added.IP) {
		t.Errorf("etc/hosts in the runtime overlay lacks %s %s:\n%s", added.IP, added.Name, hosts)
	}
}

func unquote(s string) string {
	return strings.Trim(strings.TrimPrefix(s, "W/"), `"`)
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestUEFIIPXEROMBoot: OVMF with QEMU's iPXE EFI ROM on the NIC (the
// default of a QEMU or libvirt UEFI VM; make lab --firmware uefi-ipxe) ->
// the ROM's iPXE asks DHCP itself (arch 7, user class iPXE) and gets the
// script URL at once: no firmware PXE, no TFTP.
func TestUEFIIPXEROMBoot(t *testing.T) {
	t.Parallel()
	e := bootNode(t, lab.UEFIIPXE, 6*time.Minute, "[script]")
	if strings.Contains(lab.Tail(e.lab.ServerLog(), 100000), "tftp: sent") {
		t.Errorf("the node used TFTP: the firmware's PXE ran, not the NIC's iPXE ROM")
	}
}

// TestUEFIHTTPBoot: OVMF's UEFI HTTP boot (its PXE turned off) -> DHCP with
// vendor class HTTPClient -> http://…/ipxe-bin/ipxe.efi, which on Debian 12
// is a symlink to /boot/ipxe.efi (served because wwserver.toml names it) ->
// iPXE -> the same path as BIOS.
func TestUEFIHTTPBoot(t *testing.T) {
	t.Parallel()
	// iPXE (ipxe.efi, loaded by the firmware over HTTP) fetched the script,
	// and the firmware never used TFTP.
	e := bootNode(t, lab.UEFIHTTP, 7*time.Minute, "[script]")
	server := lab.Tail(e.lab.ServerLog(), 100000)
	if !strings.Contains(server, "file="+e.lab.ServerURL()+"/ipxe-bin/ipxe.efi") {
		t.Errorf("DHCP did not offer the HTTP boot URL")
	}
	if strings.Contains(server, "tftp: sent") {
		t.Errorf("the firmware used TFTP, not HTTP boot")
	}
	// The firmware's GET /ipxe-bin/ipxe.efi was answered 200 (Debian's
	// ipxe.efi is a symlink to /boot/ipxe.efi).
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet, e.lab.ServerURL()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.lab.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	served := false
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, "wwserver_http_requests_total{") && strings.Contains(line, `code="200"`) &&
			strings.Contains(line, `stage="ipxe-bin"`) && !strings.HasSuffix(line, " 0") {
			served = true
		}
	}
	if !served {
		t.Errorf("no GET /ipxe-bin answered 200; metrics:\n%s", metrics)
	}
}

// TestIPXERetriesDownload: the default script's shared retry loop in
// Debian's iPXE. The image's kernel is missing when the node asks for it
// (404), so the script counts the failed try and says so; the kernel is put
// back and the next try (goto ${wwlabel}) fetches it, and the node boots.
func TestIPXERetriesDownload(t *testing.T) {
	t.Parallel()
	n := lab.LabNode(1)
	e := newEnv(t, 5*time.Minute, []lab.Node{n})
	kernels, err := filepath.Glob(filepath.Join(e.lab.TreeDir, "images", "default", "rootfs", "boot", "vmlinuz-*"))
	if err != nil || len(kernels) == 0 {
		t.Fatalf("no kernel in the served image: %v", err)
	}
	for _, k := range kernels {
		if err := os.Rename(k, heldKernel(k)); err != nil {
			t.Fatal(err)
		}
	}
	vm := e.startVM(lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: lab.BIOS})
	line, err := vm.WaitForLine(e.ctx, "wwserver: kernel download failed, try 1 of 5, retrying in 2s")
	if err != nil {
		t.Fatalf("the script did not report the failed try: %v", err)
	}
	t.Logf("%s: %q", vm.Name, strings.TrimSpace(line))
	for _, k := range kernels {
		if err := os.Rename(heldKernel(k), k); err != nil {
			t.Fatal(err)
		}
	}
	e.waitBooted(vm, n.Name)
	if strings.Contains(vm.SerialTail(100000), "FAILED to download") {
		t.Error("the script gave up although the kernel came back within its tries")
	}
}

// heldKernel is where TestIPXERetriesDownload keeps kernel k meanwhile
// (a name the server does not take for a kernel).
func heldKernel(k string) string { return filepath.Join(filepath.Dir(k), "held-"+filepath.Base(k)) }
