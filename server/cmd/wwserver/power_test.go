package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/power/ipmisim"
	"github.com/wwcluster/ww/server/status"
)

// TestPowerCommands: `wwserver power` against OpenIPMI's ipmi_sim (a real
// RMCP+ BMC on loopback) whose "node" is a process: one line per node in
// name order, the exit code says whether any failed (wrong password, no
// BMC), on/cycle/off change the process, status tells the truth, status
// --power adds the column, and the password shows nowhere.
func TestPowerCommands(t *testing.T) {
	if err := ipmisim.Available(); err != nil {
		t.Skipf("%v (run by make test, which installs it)", err)
	}
	node := ipmisim.NewProcessNode(t)
	sim := ipmisim.Start(t, ipmisim.Options{StartCmd: node.Script})
	dir := t.TempDir()
	nodes := `[profiles.bmc.bmc]
username = "` + ipmisim.User + `"
password = "` + ipmisim.Password + `"

[nodes.n001]
image = "img"
profiles = ["bmc"]
[nodes.n001.bmc]
address = "` + sim.Address() + `"

[nodes.n002]
image = "img"
profiles = ["bmc"]
[nodes.n002.bmc]
address = "` + sim.Address() + `"
password = "not-the-password"

[nodes.n003]
image = "img"

[nodes.n004]
image = "img"
[nodes.n004.bmc]
address = "` + sim.Address() + `"
username = "` + ipmisim.User + `"
password_file = "bmc.pass"
`
	writeTestFile(t, filepath.Join(dir, config.NodesFile), nodes)
	writeTestFile(t, filepath.Join(dir, "bmc.pass"), ipmisim.Password+"\n")
	r := "--root=" + dir

	start := time.Now()
	out := cli(t, false, "power", "status", "n[001-004]", r)
	t.Logf("power status of 4 nodes (one wrong password, one without BMC): %s\n%s", time.Since(start), out)
	want := []string{`^n001: off$`, `^n002: error: status: IPMI login to 127\.0\.0\.1:\d+ refused \(wrong username or password\?\)`,
		`^n003: error: no BMC address \(set nodes\.n003\.bmc\.address`, `^n004: off$`, `^2 of 4 nodes failed$`}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if !regexp.MustCompile(w).MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %s", i+1, lines[i], w)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("power status with a wrong password took %s", took)
	}

	if out := cli(t, true, "power", "on", "n001", r); out != "n001: on ok\n" {
		t.Errorf("power on: %q", out)
	}
	ipmisim.WaitFor(t, "the node to start", func() bool { return len(node.Running()) == 1 })
	first := node.Running()[0]
	if out := cli(t, true, "power", "status", "n001", r); out != "n001: on\n" {
		t.Errorf("power status after on: %q", out)
	}
	cli(t, true, "power", "cycle", "n001", r)
	ipmisim.WaitFor(t, "a new node process after cycle", func() bool {
		p := node.Running()
		return len(p) == 1 && p[0] != first
	})

	// status --power: the server's report, plus each node's BMC asked.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(status.Report{Now: time.Now().Unix(), UpdateIntervalSeconds: 30,
			Nodes: []status.NodeStatus{{Name: "n001", Stage: "RUNTIME_OVERLAY"}, {Name: "n003"}}})
	}))
	defer srv.Close()
	out = cli(t, true, "status", "--power", "--server", srv.URL, r)
	if !regexp.MustCompile(`(?m)^NODENAME .*LASTSEEN \(s\) POWER$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^n001 +RUNTIME_OVERLAY .* on$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^n003 .* --$`).MatchString(out) {
		t.Errorf("status --power:\n%s", out)
	}

	if out := cli(t, true, "power", "off", "n004", r); out != "n004: off ok\n" {
		t.Errorf("power off via password_file: %q", out)
	}
	ipmisim.WaitFor(t, "the node to stop", func() bool { return len(node.Running()) == 0 })
	ipmisim.WaitFor(t, "power status off", func() bool {
		var buf strings.Builder
		return run([]string{"power", "status", "n001", r}, &buf, &buf) == 0 && buf.String() == "n001: off\n"
	})

	list := cli(t, true, "node", "list", "n00[1-2]", "--json", r)
	if strings.Contains(list, `": "`+ipmisim.Password+`"`) || strings.Contains(list, "not-the-password") ||
		!strings.Contains(list, `"password": "(redacted)"`) {
		t.Errorf("node list --json shows a password, or not that one is set:\n%s", list)
	}
	if out := cli(t, false, "console", "n003", r); !strings.Contains(out, "no BMC address") {
		t.Errorf("console without BMC: %s", out)
	}
	if out := cli(t, false, "console", "n00[1-2]", r); !strings.Contains(out, "console takes one node") {
		t.Errorf("console of two nodes: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
		t.Error("power commands wrote into the tree")
	}
}

// TestNodeBMCFlags: node add/set --bmc-*: an IPv4 BMC address counts up
// across the names, a password replaces a password file, ” unsets, and
// the password never shows in node list.
func TestNodeBMCFlags(t *testing.T) {
	dir := initTree(t)
	r := "--root=" + dir
	cli(t, true, "node", "add", "c[01-02]", r, "--bmc-address", "10.9.0.11:6230", "--bmc-username", "admin",
		"--bmc-password-file", "/etc/wwserver/bmc.pass")
	ns, err := config.LoadNodesTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, addr := range map[string]string{"c01": "10.9.0.11:6230", "c02": "10.9.0.12:6230"} {
		b := ns.ByName[name].BMC
		if b == nil || b.Address != addr || b.Username != "admin" || b.PasswordFile != "/etc/wwserver/bmc.pass" || b.Interface != "lanplus" {
			t.Errorf("%s bmc = %+v, want address %s", name, b, addr)
		}
	}
	cli(t, true, "node", "set", "c01", r, "--bmc-password", "hunter2", "--bmc-interface", "redfish")
	cli(t, true, "node", "set", "c02", r, "--bmc-address", "")
	ns, err = config.LoadNodesTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b := ns.ByName["c01"].BMC; b.PasswordFile != "" || b.Password != config.RedactedPassword || b.Interface != "redfish" ||
		ns.BMCPassword("c01") != "hunter2" {
		t.Errorf("c01 after --bmc-password: %+v %q", b, ns.BMCPassword("c01"))
	}
	if b := ns.ByName["c02"].BMC; b.Address != "" || b.Username != "admin" {
		t.Errorf("c02 after --bmc-address '': %+v", b)
	}
	if out := cli(t, false, "node", "add", "c[03-04]", r, "--bmc-address", "bmc-c03"); !strings.Contains(out, "cannot count up") {
		t.Errorf("a host name for two nodes: %s", out)
	}
	if out := cli(t, false, "node", "set", "c01", r, "--bmc-interface", "ipmi"); !strings.Contains(out, `nodes.c01.bmc.interface: must be "lanplus" or "redfish"`) {
		t.Errorf("bad interface: %s", out)
	}
	if out := cli(t, true, "node", "list", "c01", "--json", r); strings.Contains(out, "hunter2") {
		t.Errorf("node list shows the password:\n%s", out)
	}
}
