package ipmisim

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ProcessNode is a node for StartCmd that is just a process: a shell
// script that records its PID and sleeps. Its process alive is its power
// on.
type ProcessNode struct {
	Script string // give as Options.StartCmd
	pids   string
}

// NewProcessNode writes the script; t.Cleanup kills every process it
// started (ipmi_sim leaves its node running when it stops).
func NewProcessNode(t testing.TB) *ProcessNode {
	t.Helper()
	dir := t.TempDir()
	n := &ProcessNode{Script: filepath.Join(dir, "node.sh"), pids: filepath.Join(dir, "pids")}
	body := "#!/bin/sh\necho $$ >> " + n.pids + "\nexec sleep 600\n"
	if err := os.WriteFile(n.Script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, pid := range n.all() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return n
}

// all is every PID the node ever had, oldest first.
func (n *ProcessNode) all() []int {
	data, _ := os.ReadFile(n.pids)
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// Running returns the node's live PIDs (zombies are not alive).
func (n *ProcessNode) Running() []int {
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

// WaitFor polls cond until it holds, failing t after 15 s (ipmi_sim acts
// on its own timers: SIGTERM after a power off, the restart of a cycle).
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not synchronisation
	}
}
