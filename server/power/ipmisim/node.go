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
	PIDFile
}

// NewProcessNode writes the script; t.Cleanup kills every process it
// started (ipmi_sim leaves its node running when it stops).
func NewProcessNode(t testing.TB) *ProcessNode {
	t.Helper()
	dir := t.TempDir()
	n := &ProcessNode{Script: filepath.Join(dir, "node.sh"), PIDFile: PIDFile(filepath.Join(dir, "pids"))}
	body := "#!/bin/sh\n" + n.PIDFile.Record() + "exec sleep 600\n"
	if err := os.WriteFile(n.Script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.KillAll)
	return n
}

// PIDFile is a file the node's start script appends its PID to (the
// script then execs the node), one line per start.
type PIDFile string

// Record is the shell line that appends the script's PID.
func (p PIDFile) Record() string { return "echo $$ >> '" + string(p) + "'\n" }

// All is every PID the node ever had, oldest first.
func (p PIDFile) All() []int {
	data, _ := os.ReadFile(string(p))
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// Running returns the node's live PIDs (zombies are not alive).
func (p PIDFile) Running() []int {
	var out []int
	for _, pid := range p.All() {
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

// KillAll kills every process the node had (SIGKILL).
func (p PIDFile) KillAll() {
	for _, pid := range p.All() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
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
