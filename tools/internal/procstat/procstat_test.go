package procstat

import (
	"os"
	"os/exec"
	"testing"
)

func TestSelf(t *testing.T) {
	// Burn a little CPU so the counter is past zero.
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i
	}
	_ = x
	cpu, err := CPU(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Fatalf("CPU(self) = %v, %v; want > 0", cpu, err)
	}
	rss, err := PeakRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Fatalf("PeakRSS(self) = %v, %v; want >= 1 MiB", rss, err)
	}
	pp, err := PPid(os.Getpid())
	if err != nil || pp != os.Getppid() {
		t.Fatalf("PPid = %d, %v; want %d", pp, err, os.Getppid())
	}
}

func TestTreeFindsChild(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	tree := Tree(os.Getpid())
	found := false
	for _, p := range tree {
		found = found || p == cmd.Process.Pid
	}
	if tree[0] != os.Getpid() || !found {
		t.Fatalf("Tree = %v; want self first and child %d", tree, cmd.Process.Pid)
	}
	if _, err := CPU(1 << 30); err == nil {
		t.Fatal("CPU of a missing process: no error")
	}
}
