package integration

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/tools/lab"
)

// TestDiscoveryBoot: a node added with `wwserver node add --discoverable`
// (no MAC) while the server runs is given to a VM whose MAC is in no
// config: the VM PXE-boots as that node, reaches RUNTIME_OVERLAY, and the
// node's MAC is written to nodes.d/.
func TestDiscoveryBoot(t *testing.T) {
	t.Parallel()
	const mac = "52:54:00:99:dc:01"
	e := newEnv(t, 6*time.Minute, []lab.Node{lab.LabNode(1)})
	add := exec.CommandContext(e.ctx, e.lab.Paths.Wwserver, "node", "add", "d001", "--discoverable",
		"--ipaddr", "10.99.0.60", "--netmask", lab.DefaultNetmask, "--root", e.lab.TreeDir)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("node add: %v\n%s", err, out)
	}
	vm := e.startVM(lab.VMOptions{Name: "d001", MAC: mac, Firmware: lab.BIOS})
	e.waitBooted(vm, "d001")
	n := e.waitRuntime("d001")
	if !strings.EqualFold(n.MAC, mac) {
		t.Errorf("status: d001 has MAC %q, want %s", n.MAC, mac)
	}
	st, err := e.lab.Status(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := st.UnknownMAC(mac); ok {
		t.Errorf("discovered MAC still listed as unknown: %+v", u)
	}
	list, err := exec.CommandContext(e.ctx, e.lab.Paths.Wwserver, "node", "list", "d001", "--root", e.lab.TreeDir).CombinedOutput()
	if err != nil || !strings.Contains(string(list), mac) {
		t.Errorf("node list d001: %v\n%s", err, list)
	}
	if log := lab.Tail(e.lab.ServerLog(), 10000); !strings.Contains(log, "discovered node") {
		t.Errorf("server log has no discovery line")
	}
}
