package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/tools/lab"
)

// TestBootTimeBench (make bench-boot; WW_BENCH_BOOT=ROUNDS): node boot time
// under QEMU TCG, single-stage vs two-stage, BIOS and UEFI, side by side in
// one run against one wwserver: QEMU start to the image's "booted: node"
// line. Each round boots the four cases once, in a rotated order; the
// server has built both forms of the image before the first boot (warm).
func TestBootTimeBench(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("WW_BENCH_BOOT"))
	if rounds <= 0 {
		t.Skip("boot time benchmark (many QEMU boots): run by make bench-boot")
	}
	two, one := lab.LabNode(1), lab.LabNode(2)
	// Both nodes boot the shipped kernel_args (what wwserver init writes,
	// with the lab's serial console). WW_BENCH_AB=1: instead of
	// single-stage, n002 boots two-stage with the earlier defaults (the
	// kernel_args without quiet, and WW_BENCH_OLD_WWCLIENT, when set, as
	// its wwclient: an earlier build), side by side with n001.
	ab, oldClient := os.Getenv("WW_BENCH_AB") == "1", os.Getenv("WW_BENCH_OLD_WWCLIENT")
	// WW_BENCH_UEFI_PATHS=1: the UEFI ways to the same two-stage boot, side
	// by side: firmware PXE -> snponly.efi (n001), firmware PXE -> shim ->
	// GRUB (n002, Secure Boot off: the Secure Boot path's loaders), and
	// UEFI HTTP boot -> ipxe.efi (n001), and OVMF starting the NIC's iPXE
	// EFI option ROM (n001, lab.UEFIIPXE).
	uefiPaths := os.Getenv("WW_BENCH_UEFI_PATHS") == "1"
	newMode, oneMode := "two-stage", "single-stage"
	var setup func(string) error
	var shim, grub string
	switch {
	case uefiPaths:
		newMode, oneMode = "PXE → snponly.efi (iPXE)", "PXE → shim → GRUB"
		one.Bootloader = "grub"
		shim, grub = secureBootFiles(t)
	case ab:
		newMode, oneMode = "shipped defaults", "earlier defaults"
		one.KernelArgs = lab.DefaultKernelArgs()
		if oldClient != "" {
			one.SystemOverlays = []string{"wwinit-old"}
			setup = func(tree string) error { return oldWwinitOverlay(tree, oldClient) }
		}
	default:
		one.Boot = "initrd"
	}
	// WW_BENCH_IMAGE: another image (e.g. build/debian-systemd), timed to
	// the bootstrap's exec of /sbin/init (the image is in place then);
	// WW_BENCH_FW: the firmware list (default bios,uefi).
	img, mem := os.Getenv("WW_BENCH_IMAGE"), 0
	until := func(n lab.Node) string { return "booted: node " + n.Name }
	if img != "" {
		mem = 1536
		until = func(lab.Node) string { return "wwinit: exec /sbin/init" }
	}
	e := newEnvWith(t, time.Duration(rounds)*40*time.Minute, envOptions{Image: img, Setup: setup,
		Tree: lab.TreeOptions{Nodes: []lab.Node{two, one}, InitKernelArgs: true, Shim: shim, GRUB: grub}})
	warm := func(path string) {
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Minute)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.lab.ServerURL()+path, nil)
		resp, err := e.lab.HTTPClient().Do(req)
		if err != nil {
			t.Fatalf("warm %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	warmOne := "/image/" + one.MAC
	if ab || uefiPaths {
		warmOne = "/modules/" + one.MAC
	}
	for _, p := range []string{"/ipxe/" + two.MAC, "/modules/" + two.MAC, "/overlay/system/" + two.MAC, warmOne, "/overlay/system/" + one.MAC} {
		warm(p)
	}
	type kase struct {
		fw   lab.Firmware
		node *lab.Node
		mode string
	}
	var cases []kase
	for _, fw := range strings.Split(envOr("WW_BENCH_FW", "bios,uefi"), ",") {
		cases = append(cases, kase{lab.Firmware(fw), &one, oneMode}, kase{lab.Firmware(fw), &two, newMode})
	}
	if uefiPaths {
		cases = []kase{{lab.UEFI, &two, newMode}, {lab.UEFI, &one, oneMode},
			{lab.UEFIHTTP, &two, "HTTP boot → ipxe.efi (iPXE)"}, {lab.UEFIIPXE, &two, "NIC's iPXE EFI ROM"}}
	}
	times, hbs := map[kase][]time.Duration{}, map[kase][]time.Duration{}
	// wwinit's line is in two-stage boots only.
	markers := phaseMarkers
	if !ab && !uefiPaths {
		markers = markers[:2]
	}
	phases := map[kase][][]time.Duration{}
	for _, c := range cases {
		phases[c] = make([][]time.Duration, len(markers))
	}
	bootIDs := map[string]string{}
	for r := range rounds {
		for i := range cases {
			c := cases[(i+r)%len(cases)]
			var vm *lab.VM
			for try := 0; ; try++ {
				vm = e.startVM(lab.VMOptions{Name: fmt.Sprintf("%s-%s-%d-%d", c.node.Name, c.fw, r, try), MAC: c.node.MAC, Firmware: c.fw, MemoryMB: mem})
				at, err := waitPhases(e.ctx, vm, markers, until(*c.node))
				if err == nil {
					for i, d := range at {
						phases[c][i] = append(phases[c][i], d)
					}
					break
				}
				// On a loaded host, TCG's timer check can fail before the
				// kernel has done anything ("IO-APIC + timer doesn't
				// work"): not a boot to time; boot again.
				if try < 2 && vm.Exited() && strings.Contains(vm.SerialTail(200), "IO-APIC + timer doesn't work") {
					t.Logf("%s %s round %d: kernel panic in TCG's timer check (host load %s); booting again", c.fw, c.mode, r, loadAvg())
					continue
				}
				t.Fatalf("%s %s round %d: %v", c.fw, c.mode, r, err)
			}
			d := time.Since(vm.Started)
			// The first heartbeat of this boot: the node's agent has the
			// network (a single-stage node prints "booted" before its
			// agent has brought the NIC up; a two-stage one after).
			hb := e.firstHeartbeat(c.node.Name, bootIDs[c.node.Name])
			bootIDs[c.node.Name] = hb.id
			vm.Stop(5 * time.Second)
			two := strings.Contains(vm.SerialTail(1000000), "wwinit: image unpacked:")
			if two != (ab || uefiPaths || c.mode == "two-stage") {
				t.Fatalf("%s %s round %d: second stage ran: %v", c.fw, c.mode, r, two)
			}
			times[c] = append(times[c], d)
			hbs[c] = append(hbs[c], hb.at.Sub(vm.Started))
			t.Logf("round %d: %s %s: booted %s, first heartbeat %s after QEMU started (load %s)", r, c.fw, c.mode,
				d.Round(100*time.Millisecond), hb.at.Sub(vm.Started).Round(100*time.Millisecond), loadAvg())
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| firmware | boot | runs | %s: median (min–max) | first heartbeat: median (min–max) | medians: script / kernel started / wwinit (two-stage) |\n|---|---|---|---|---|---|\n", strings.TrimSuffix(until(one), " "+one.Name))
	for _, c := range cases {
		var ph []string
		for _, ds := range phases[c] {
			ph = append(ph, fmt.Sprintf("%.1f", median(ds).Seconds()))
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s s |\n", c.fw, c.mode, len(times[c]), spread(times[c]), spread(hbs[c]), strings.Join(ph, " / "))
	}
	t.Logf("boot time, QEMU TCG, QEMU start to %q:\n%s", until(one), b.String())
	if out := os.Getenv("WW_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// phaseMarkers are serial console lines every boot path prints, in order:
// the loader (iPXE or GRUB) runs the node's script, the loader starts the
// kernel, the kernel runs wwinit.
var phaseMarkers = []string{"wwserver: booting ", "wwserver: starting the kernel", "wwinit: starting"}

// waitPhases waits for each of markers, then for the until line, and
// returns when each marker was seen after QEMU started (to the serial log's
// polling interval).
func waitPhases(ctx context.Context, vm *lab.VM, markers []string, until string) ([]time.Duration, error) {
	at := make([]time.Duration, len(markers))
	for i, m := range markers {
		if _, err := vm.WaitForLine(ctx, m); err != nil {
			return at, err
		}
		at[i] = time.Since(vm.Started)
	}
	_, err := vm.WaitForLine(ctx, until)
	return at, err
}

// median of ds (0 when empty).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// oldWwinitOverlay makes overlays/wwinit-old in tree: overlays/wwinit with
// the wwclient binary at path (an earlier build) in place of the current one.
func oldWwinitOverlay(tree, path string) error {
	src, dst := filepath.Join(tree, "overlays", "wwinit"), filepath.Join(tree, "overlays", "wwinit-old")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s: %v: %s", src, err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dst, "usr", "sbin", "wwclient"), data, 0o755)
}

// loadAvg is the first field of /proc/loadavg.
func loadAvg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// spread is "median s (min–max)".
func spread(ds []time.Duration) string {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return fmt.Sprintf("%.1f s (%.1f–%.1f)", ds[len(ds)/2].Seconds(), ds[0].Seconds(), ds[len(ds)-1].Seconds())
}

type heartbeat struct {
	id string
	at time.Time
}

// firstHeartbeat polls status until node name has a heartbeat with a boot
// ID other than prev, and returns when that was seen.
func (e *env) firstHeartbeat(name, prev string) heartbeat {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Minute)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := e.lab.Status(qctx)
		qcancel()
		if err == nil {
			if n, ok := st.Node(name); ok && n.Heartbeat != nil && n.Heartbeat.BootID != "" && n.Heartbeat.BootID != prev {
				return heartbeat{id: n.Heartbeat.BootID, at: time.Now()}
			}
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("%s: no heartbeat from its new boot: %v", name, ctx.Err())
		case <-tick.C:
		}
	}
}
