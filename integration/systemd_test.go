package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/tools/lab"
)

// bootReport is the systemd check overlay: a unit wanted by
// multi-user.target that waits for the end of start-up and prints, on the
// serial console, one line the test parses:
//
//	wwcheck: state=running wwclient=active failed=[]
//
// plus the status of every failed unit, so a failure explains itself.
var bootReport = map[string]string{
	"usr/local/sbin/wwcheck": `#!/bin/sh
# integration test only: report systemd's verdict on this boot
# bounded: a unit stuck in a restart loop keeps the state at "starting"
timeout 240 systemctl is-system-running --wait >/dev/null
state=$(systemctl is-system-running)
ww=$(systemctl is-active wwclient.service)
failed=$(systemctl list-units --state=failed --plain --no-legend --no-pager | cut -d' ' -f1 | tr '\n' ' ')
for u in $failed; do
	systemctl status --no-pager --lines=20 "$u" 2>&1 | sed 's/^/wwcheck-failed: /' >/dev/console
done
if [ -e /sys/fs/selinux/enforce ]; then
	# SELinux: PID 1's domain, and for files wwclient wrote their label
	# next to the one the policy's file_contexts gives
	echo "wwcheck-selinux: enforce=$(cat /sys/fs/selinux/enforce) pid1=$(tr -d '\0' </proc/1/attr/current)" >/dev/console
	for f in /etc/hosts /etc/passwd /etc/group /etc/shadow /etc/gshadow /root/.ssh /root/.ssh/authorized_keys /etc/wwclient/wwclient.toml; do
		[ -e "$f" ] && echo "wwcheck-label: $f have=$(stat -c %C "$f") want=$(matchpathcon -n "$f")" >/dev/console
	done
fi
echo "wwcheck: state=$state wwclient=$ww failed=[${failed% }]" >/dev/console
`,
	"etc/systemd/system/wwcheck.service": `[Unit]
Description=Report the boot result on the console (integration test)

[Service]
# simple, not oneshot: start-up must be able to finish while it waits
Type=simple
ExecStart=/usr/local/sbin/wwcheck
`,
}

// writeBootReport writes the check overlay as overlays/NAME in tree.
func writeBootReport(tree, name string) error {
	dir := filepath.Join(tree, "overlays", name)
	for rel, content := range bootReport {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(rel, "usr/local/sbin/") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	wants := filepath.Join(dir, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return err
	}
	return os.Symlink("../wwcheck.service", filepath.Join(wants, "wwcheck.service"))
}

var wwcheckLine = regexp.MustCompile(`wwcheck: state=(\S*) wwclient=(\S*) failed=\[(.*)\]`)

// TestSystemdBoot: a Debian 12 minbase + systemd image (initramfs/debian-image.sh
// systemd) PXE-boots through the wwclient bootstrap, which execs systemd.
// systemd reaches the end of start-up with state "running" (no failed unit),
// wwclient.service is active, and the agent's heartbeats reach the server.
func TestSystemdBoot(t *testing.T) {
	t.Parallel()
	n := lab.LabNode(1)
	e := newEnvWith(t, 12*time.Minute, envOptions{
		Image: envOr("WW_SYSTEMD_IMAGE", "../build/debian-systemd"),
		Tree: lab.TreeOptions{
			Nodes:          []lab.Node{n},
			SystemOverlays: []string{"wwinit", "wwcheck"},
		},
		Setup: func(tree string) error { return writeBootReport(tree, "wwcheck") },
	})
	vm := e.startVM(lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: lab.BIOS, MemoryMB: 1536})
	line, err := vm.WaitForLine(e.ctx, "wwcheck: state=")
	if err != nil {
		t.Fatalf("no boot report from systemd: %v", err)
	}
	t.Logf("%s: %q %s after QEMU started", n.Name, line, time.Since(vm.Started).Round(time.Second))
	e.checkPath(vm)
	m := wwcheckLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("malformed report %q", line)
	}
	serial := vm.SerialTail(100000)
	if !strings.Contains(serial, "wwinit: exec /sbin/init") {
		t.Errorf("the console does not show the bootstrap exec'ing /sbin/init")
	}
	if !strings.Contains(serial, "running in system mode") {
		t.Errorf("the console does not show systemd starting as PID 1")
	}
	if m[1] != "running" {
		t.Errorf("systemctl is-system-running: %q, want running", m[1])
	}
	if m[2] != "active" {
		t.Errorf("wwclient.service: %q, want active", m[2])
	}
	if m[3] != "" {
		t.Errorf("failed units: %s", m[3])
		for _, l := range strings.Split(serial, "\n") {
			if strings.HasPrefix(l, "wwcheck-failed: ") {
				t.Log(l)
			}
		}
	}
	hb := e.waitRuntime(n.Name)
	if hb.Heartbeat.BootID == "" {
		t.Errorf("heartbeat without boot_id: %+v", hb.Heartbeat)
	}
}

// TestSELinuxEnforcingBoot (make test-selinux; opt-in with WW_SELINUX_IMAGE,
// because under TCG it takes several minutes): the Debian systemd image with
// selinux-policy-default, SELINUX=enforcing, booted with security=selinux
// selinux=1. PID 1 runs as init_t, the files wwclient wrote carry the labels
// the policy's file_contexts gives, nothing wwinit or wwclient did is denied,
// and the boot ends with no failed unit.
func TestSELinuxEnforcingBoot(t *testing.T) {
	img := os.Getenv("WW_SELINUX_IMAGE")
	if img == "" {
		t.Skip("set WW_SELINUX_IMAGE (make test-selinux builds the image and runs this)")
	}
	t.Parallel()
	n := lab.LabNode(1)
	e := newEnvWith(t, 20*time.Minute, envOptions{
		Image: img,
		Tree: lab.TreeOptions{
			Nodes:          []lab.Node{n},
			SystemOverlays: []string{"wwinit", "wwcheck"},
			KernelArgs:     append(lab.DefaultKernelArgs(), "security=selinux", "selinux=1"),
			// The labels set while the root is copied to the tmpfs are
			// what this checks: the single-stage path (two-stage labels
			// in place after the switch, wwclient/bootstrap's tests).
			Boot: "initrd",
		},
		Setup: func(tree string) error { return writeBootReport(tree, "wwcheck") },
	})
	vm := e.startVM(lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: lab.BIOS, MemoryMB: 1536})
	line, err := vm.WaitForLine(e.ctx, "wwcheck: state=")
	if err != nil {
		t.Fatalf("no boot report from systemd: %v", err)
	}
	t.Logf("%s: %q %s after QEMU started", n.Name, line, time.Since(vm.Started).Round(time.Second))
	serial := vm.SerialTail(1000000)
	for _, l := range strings.Split(serial, "\n") {
		if strings.Contains(l, "wwinit: SELinux") || strings.Contains(l, "wwcheck-") || strings.Contains(l, "avc:  denied") {
			t.Log(strings.TrimSpace(l))
		}
	}
	sel := regexp.MustCompile(`wwcheck-selinux: enforce=(\d) pid1=(\S+)`).FindStringSubmatch(serial)
	if sel == nil {
		t.Fatal("no SELinux report: SELinux is not enabled on the node")
	}
	if sel[1] != "1" {
		t.Errorf("enforce=%s, want 1 (enforcing)", sel[1])
	}
	if !strings.Contains(sel[2], ":init_t:") {
		t.Errorf("PID 1 runs as %s, want init_t", sel[2])
	}
	// the root was labelled while copied to the tmpfs: no setfiles pass
	if !strings.Contains(serial, "wwinit: root: switched to tmpfs, labelled as copied, in ") || strings.Contains(serial, "wwinit: SELinux: labelled the root file system") {
		t.Errorf("the root was not labelled during the copy")
	}
	if strings.Contains(serial, "Failed to transition into init label") {
		t.Errorf("systemd could not transition into its init label")
	}
	labels := regexp.MustCompile(`wwcheck-label: (\S+) have=(\S+) want=(\S+)`).FindAllStringSubmatch(serial, -1)
	if len(labels) < 5 {
		t.Errorf("only %d label reports", len(labels))
	}
	for _, m := range labels {
		if m[2] != m[3] {
			t.Errorf("%s is labelled %s, the policy says %s", m[1], m[2], m[3])
		}
	}
	for _, l := range strings.Split(serial, "\n") {
		// wwinit is comm "init" (/init), the agent "wwclient", its relabel
		// "restorecon"; both run in the kernel's domain
		if strings.Contains(l, "avc:  denied") && (strings.Contains(l, `comm="wwclient"`) || strings.Contains(l, `comm="init"`) ||
			strings.Contains(l, `comm="restorecon"`) || strings.Contains(l, "scontext=system_u:system_r:kernel_t")) {
			t.Errorf("denial caused by wwinit/wwclient: %s", strings.TrimSpace(l))
		}
	}
	m := wwcheckLine.FindStringSubmatch(line)
	if m == nil || m[1] != "running" || m[2] != "active" || m[3] != "" {
		t.Errorf("boot report %q: want state=running wwclient=active and no failed unit", line)
	}
	e.waitRuntime(n.Name)
}
