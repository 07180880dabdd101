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
	e := newEnvWith(t, 8*time.Minute, envOptions{
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
