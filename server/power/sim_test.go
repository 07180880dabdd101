package power

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/power/ipmisim"
)

// simNode is a node for ipmi_sim's startcmd: a shell script that records
// its PID and then sleeps; its process is the node's "power".
type simNode struct {
	t    *testing.T
	pids string
}

func newSimNode(t *testing.T) (*simNode, string) {
	dir := t.TempDir()
	n := &simNode{t: t, pids: filepath.Join(dir, "pids")}
	script := filepath.Join(dir, "node.sh")
	body := "#!/bin/sh\necho $$ >> " + n.pids + "\nexec sleep 600\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // ipmi_sim leaves its node running when it stops
		for _, pid := range n.all() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return n, script
}

// all is every PID the node ever had, oldest first.
func (n *simNode) all() []int {
	data, _ := os.ReadFile(n.pids)
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// running returns the PIDs of the node that are alive (not zombies).
func (n *simNode) running() []int {
	var out []int
	for _, pid := range n.all() {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] != "Z" {
			out = append(out, pid)
		}
	}
	return out
}

// waitFor polls cond until it holds or 15 s pass (ipmi_sim acts on its own
// timers: SIGTERM after a power off, the restart of a cycle).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// TestIPMISimPower drives OpenIPMI's ipmi_sim (a real RMCP+ BMC) through the
// lanplus controller: on starts the node's process, status tells the truth,
// cycle replaces the process, off ends it; a wrong password fails fast
// with the BMC's reason.
func TestIPMISimPower(t *testing.T) {
	if err := ipmisim.Available(); err != nil {
		t.Skipf("%v (run by make test, which installs it)", err)
	}
	node, script := newSimNode(t)
	sim := ipmisim.Start(t, ipmisim.Options{StartCmd: script})
	target := Target{Node: "n001", Interface: "lanplus", Address: sim.Address(), Username: ipmisim.User,
		Password: ipmisim.Password, CipherSuite: 3}
	c, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	status := func() State {
		t.Helper()
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := status(); st != StateOff {
		t.Fatalf("status before power on = %q, want off", st)
	}
	start := time.Now()
	if err := c.On(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("power on answered in %s", time.Since(start))
	waitFor(t, "the node process to start", func() bool { return len(node.running()) == 1 })
	if st := status(); st != StateOn {
		t.Fatalf("status with the node running = %q, want on", st)
	}
	first := node.running()[0]

	start = time.Now()
	if err := c.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new node process after cycle", func() bool {
		r := node.running()
		return len(r) == 1 && r[0] != first
	})
	t.Logf("cycle: new process after %s", time.Since(start))

	if err := c.Off(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the node process to end after off", func() bool { return len(node.running()) == 0 })
	waitFor(t, "status off", func() bool { return status() == StateOff })

	bad := target
	bad.Password = "wrong"
	c2, err := New(bad)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = c2.Status(ctx)
	if err == nil {
		t.Fatal("a wrong password gave a status")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("wrong password took %s to fail", took)
	}
	t.Logf("wrong password: %v (%s)", err, time.Since(start))
	if !strings.Contains(err.Error(), "127.0.0.1") || !strings.Contains(err.Error(), "wrong username or password") {
		t.Errorf("error does not name the BMC and the likely cause: %v", err)
	}
}
