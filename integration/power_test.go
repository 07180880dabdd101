package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/power/ipmisim"
	"github.com/wwcluster/ww/tools/lab"
)

// Ports inside the lab's namespace (nothing else listens there).
const (
	bmcPort     = 9623 // ipmi_sim's RMCP+ (UDP)
	bmcVMPort   = 9002 // ipmi_sim's VM interface, QEMU's ipmi-bmc-extern connects (TCP)
	nodeSerPort = 9003 // QEMU's serial port, ipmi_sim's SOL connects (TCP)
)

// TestIPMIPowerConsole: OpenIPMI's ipmi_sim is the BMC of lab node n001; its
// startcmd is the node's QEMU (BIOS, PXE on the lab bridge, the serial port
// for SOL, an IPMI BT interface wired to the simulator). Through the
// wwserver CLI only: power on boots the node to RUNTIME_OVERLAY while
// `console n001` shows SeaBIOS and iPXE; power status is truthful; power
// cycle starts a new QEMU that PXE-boots again to RUNTIME_OVERLAY; reset
// keeps the QEMU and the firmware starts over; power off stops it; a
// wrong password is a quick, clear per-node error. Run by make test-cluster.
func TestIPMIPowerConsole(t *testing.T) {
	if os.Getenv("WW_TEST_POWER") != "1" {
		t.Skip("QEMU behind ipmi_sim takes minutes: run by make test-cluster (WW_TEST_POWER=1)")
	}
	if err := ipmisim.Available(); err != nil {
		unavailable(t, err)
	}
	started := time.Now()
	n := lab.LabNode(1)
	bmcTable := fmt.Sprintf("\n[nodes.%s.bmc]\naddress = \"127.0.0.1:%d\"\nusername = %q\npassword = %q\n"+
		"\n[nodes.n002]\nprofiles = [\"default\"]\n[nodes.n002.bmc]\naddress = \"127.0.0.1:%d\"\nusername = %q\npassword = \"wrong\"\n",
		n.Name, bmcPort, ipmisim.User, ipmisim.Password, bmcPort, ipmisim.User)
	e := newEnvWith(t, 10*time.Minute, envOptions{Tree: lab.TreeOptions{Nodes: []lab.Node{n}},
		Setup: func(tree string) error { return appendFile(filepath.Join(tree, "nodes.toml"), bmcTable) }})
	q := newSimQEMU(t, e, n)
	cli := func(args ...string) (string, error) { return e.wwserverInNS(args...) }
	ipmisim.Start(t, ipmisim.Options{StartCmd: q.script, Port: bmcPort, SerialPort: bmcVMPort,
		SOL: fmt.Sprintf("tcp:127.0.0.1:%d", nodeSerPort), Netns: e.lab.NS,
		Ready: func() error { _, err := cli("power", "status", n.Name, "--timeout", "2s"); return err }})
	t.Logf("lab and BMC ready after %s", time.Since(started).Round(time.Millisecond))
	e.expectPower(n.Name, "off")

	con := e.startConsole(n.Name)
	out, err := cli("power", "on", n.Name)
	if err != nil || out != n.Name+": on ok\n" {
		t.Fatalf("power on: %q %v", out, err)
	}
	poweredOn := time.Now()
	first := q.waitPIDs(t, func(p []int) bool { return len(p) == 1 })[0]
	e.waitRuntime(n.Name)
	t.Logf("power on -> RUNTIME_OVERLAY with heartbeats: %s", time.Since(poweredOn).Round(time.Second))
	for _, want := range []string{"SeaBIOS", "iPXE"} {
		con.waitFor(t, e.ctx, want)
	}
	e.expectPower(n.Name, "on")

	out, err = cli("power", "cycle", n.Name)
	if err != nil {
		t.Fatalf("power cycle: %q %v", out, err)
	}
	cycled := time.Now()
	second := q.waitPIDs(t, func(p []int) bool { return len(p) == 1 && p[0] != first })[0]
	t.Logf("cycle: QEMU %d replaced by %d after %s", first, second, time.Since(cycled).Round(time.Millisecond))
	e.waitReboot(n.Name)
	t.Logf("power cycle -> PXE boot -> RUNTIME_OVERLAY again: %s", time.Since(cycled).Round(time.Second))

	// ipmi_sim ends the SOL session when the node's process exits (the
	// cycle did): a console is opened again, as an admin would.
	select {
	case err := <-con.done:
		t.Logf("console ended with the QEMU it showed (%v): ipmi_sim deactivates SOL on power off; it printed %d bytes, ending: %q",
			err, con.len(), con.tail(400))
		con = e.startConsole(n.Name)
	default:
	}
	mark := con.len()
	if out, err := cli("power", "reset", n.Name); err != nil {
		t.Fatalf("power reset: %q %v", out, err)
	}
	con.waitForAfter(t, e.ctx, mark, "SeaBIOS")
	if p := q.Running(); len(p) != 1 || p[0] != second {
		t.Errorf("reset: QEMU processes %v, want the same %d", p, second)
	}

	start := time.Now()
	out, err = cli("power", "status", "n00[1-2]")
	if err == nil || !strings.Contains(out, "n001: on\n") ||
		!strings.Contains(out, "n002: error: status: IPMI login to 127.0.0.1:9623 refused (wrong username or password?)") {
		t.Errorf("status with a wrong password for n002: %v\n%s", err, out)
	}
	t.Logf("power status, n002 with a wrong password: %s\n%s", time.Since(start).Round(time.Millisecond), out)

	if out, err := cli("power", "off", n.Name); err != nil {
		t.Fatalf("power off: %q %v", out, err)
	}
	q.waitPIDs(t, func(p []int) bool { return len(p) == 0 })
	e.expectPower(n.Name, "off")
	con.quit(t)
	t.Logf("second console showed %d bytes, ending: %q; whole test %s", con.len(), con.tail(300), time.Since(started).Round(time.Second))
}

// appendFile appends text to path.
func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// wwserverInNS runs the wwserver CLI in the lab's namespace (where the BMC
// is) on the lab's tree and returns its output (stdout and stderr).
func (e *env) wwserverInNS(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	argv := append([]string{"netns", "exec", e.lab.NS, e.lab.Paths.Wwserver}, args...)
	argv = append(argv, "--root", e.lab.TreeDir)
	out, err := exec.CommandContext(ctx, "ip", argv...).CombinedOutput()
	return string(out), err
}

// expectPower waits (up to 20 s: ipmi_sim's process handling) until
// `power status NODE` says want.
func (e *env) expectPower(node, want string) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := e.wwserverInNS("power", "status", node)
		if err == nil && out == node+": "+want+"\n" {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("power status %s: %q %v, want %s", node, out, err, want)
		}
		time.Sleep(200 * time.Millisecond) // poll interval
	}
}

// waitReboot waits until status shows the node booting again (a stage
// before RUNTIME_OVERLAY), then at RUNTIME_OVERLAY with heartbeats.
func (e *env) waitReboot(name string) {
	e.t.Helper()
	_, err := e.lab.WaitStatus(e.ctx, name+" booting again", func(s *lab.Status) bool {
		n, ok := s.Node(name)
		return ok && n.Stage != "RUNTIME_OVERLAY"
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.waitRuntime(name)
}

// simQEMU is the node behind ipmi_sim: a script that records its PID and
// execs QEMU (started by ipmi_sim in the lab's namespace).
type simQEMU struct {
	script string
	ipmisim.PIDFile
}

func newSimQEMU(t *testing.T, e *env, n lab.Node) *simQEMU {
	tap, err := e.lab.AddTap(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	q := &simQEMU{script: filepath.Join(e.lab.Dir, n.Name+".qemu.sh"), PIDFile: ipmisim.PIDFile(filepath.Join(e.lab.Dir, n.Name+".pids"))}
	args := []string{e.lab.Paths.QEMU, "-name", n.Name, "-accel", "tcg", "-m", "1024", "-smp", "1", "-nographic",
		"-monitor", "none", "-boot", "n",
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no",
		"-device", "virtio-net-pci,mac=" + n.MAC + ",netdev=n0,bootindex=1",
		// The BMC: QEMU's IPMI BT interface, its BMC outside (ipmi_sim's VM interface).
		"-chardev", fmt.Sprintf("socket,id=ipmi0,host=127.0.0.1,port=%d,reconnect=10", bmcVMPort),
		"-device", "ipmi-bmc-extern,chardev=ipmi0,id=bmc0", "-device", "isa-ipmi-bt,bmc=bmc0",
		// The serial port, for SOL: QEMU waits until ipmi_sim connects.
		"-chardev", fmt.Sprintf("socket,id=ser0,host=127.0.0.1,port=%d,server=on,wait=on,logfile=%s,logappend=on",
			nodeSerPort, filepath.Join(e.lab.Dir, n.Name+".serial.log")),
		"-serial", "chardev:ser0"}
	body := "#!/bin/sh\n" + q.Record() + "exec " + lab.ShellQuote(args) + " 2>>" + filepath.Join(e.lab.Dir, n.Name+".qemu.log") + "\n"
	if err := os.WriteFile(q.script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.KillAll) // ipmi_sim leaves its QEMU running when it stops
	return q
}

// waitPIDs polls the running QEMUs until ok holds (30 s).
func (q *simQEMU) waitPIDs(t *testing.T, ok func([]int) bool) []int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p := q.Running(); ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU processes %v (all %v)", q.Running(), q.All())
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// console is a running `wwserver console NODE` in the lab's namespace.
type console struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
	done  chan error
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *console) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Len()
}

// tail is the last n bytes the console printed.
func (c *console) tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.out.Bytes()
	return string(b[max(0, len(b)-n):])
}

func (e *env) startConsole(node string) *console {
	e.t.Helper()
	c := &console{done: make(chan error, 1)}
	c.cmd = exec.Command("ip", "netns", "exec", e.lab.NS, e.lab.Paths.Wwserver, "console", node, "--root", e.lab.TreeDir)
	c.cmd.Stdout, c.cmd.Stderr = c, c
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		e.t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	e.t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
		}
	})
	c.waitFor(e.t, e.ctx, "quit with")
	return c
}

// waitFor waits until the console output holds want.
func (c *console) waitFor(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	c.waitForAfter(t, ctx, 0, want)
}

// waitForAfter waits until the console output after offset holds want.
func (c *console) waitForAfter(t *testing.T, ctx context.Context, offset int, want string) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		c.mu.Lock()
		got := c.out.Bytes()[offset:]
		found := bytes.Contains(got, []byte(want))
		all := c.out.Bytes()
		tail := string(all[max(0, len(all)-600):])
		c.mu.Unlock()
		if found {
			return
		}
		select {
		case err := <-c.done:
			t.Fatalf("console ended (%v) before showing %q; its output ends: %q", err, want, tail)
		case <-ctx.Done():
			t.Fatalf("console never showed %q; its output ends: %q", want, tail)
		case <-tick.C:
		}
	}
}

// quit types ~. at a line start and expects the console to end cleanly.
func (c *console) quit(t *testing.T) {
	t.Helper()
	if _, err := c.stdin.Write([]byte("\r~.")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		if err != nil {
			t.Errorf("console after ~.: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("~. did not end the console")
	}
}
