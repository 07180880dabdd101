package power

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/power/ipmisim"
)

// TestIPMISimPower drives OpenIPMI's ipmi_sim (a real RMCP+ BMC) through the
// lanplus controller: on starts the node's process, status tells the truth,
// cycle replaces the process, off ends it; a wrong password fails fast
// with the BMC's reason.
func TestIPMISimPower(t *testing.T) {
	if err := ipmisim.Available(); err != nil {
		t.Skipf("%v (run by make test, which installs it)", err)
	}
	node := ipmisim.NewProcessNode(t)
	sim := ipmisim.Start(t, ipmisim.Options{StartCmd: node.Script})
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
	ipmisim.WaitFor(t, "the node process to start", func() bool { return len(node.Running()) == 1 })
	if st := status(); st != StateOn {
		t.Fatalf("status with the node running = %q, want on", st)
	}
	first := node.Running()[0]

	start = time.Now()
	if err := c.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	ipmisim.WaitFor(t, "a new node process after cycle", func() bool {
		r := node.Running()
		return len(r) == 1 && r[0] != first
	})
	t.Logf("cycle: new process after %s", time.Since(start))

	if err := c.Off(ctx); err != nil {
		t.Fatal(err)
	}
	ipmisim.WaitFor(t, "the node process to end after off", func() bool { return len(node.Running()) == 0 })
	ipmisim.WaitFor(t, "status off", func() bool { return status() == StateOff })

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
