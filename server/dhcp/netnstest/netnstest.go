// Package netnstest gives tests a private two-host network: a pair of
// network namespaces ("server" and "client") joined by a veth, with
// addresses that exist only inside them. Servers under test run in the
// server namespace on a goroutine locked to an OS thread that entered it;
// client tools run in the client namespace via `ip netns exec`.
//
// It needs root and iproute2. Without root the test is skipped; a missing
// tool skips too, except under CI=true, where it fails.
package netnstest

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Pair is a server and a client namespace joined by a veth.
type Pair struct {
	Server, Client     string // namespace names
	ServerIf, ClientIf string // interface names inside them
	ServerIP, ClientIP string // addresses on the veth ends
	PrefixLen          int
	ClientMAC          string // initial MAC of the client end
}

// debianPackages names the Debian 12 package of each tool the tests ask
// Require for; the Makefile's TEST_PACKAGES (make deps-test) lists them all.
var debianPackages = map[string]string{
	"ip":                 "iproute2",
	"busybox":            "busybox-static",
	"tftp":               "tftp-hpa",
	"curl":               "curl",
	"perfdhcp":           "kea-admin",
	"qemu-system-x86_64": "qemu-system-x86",
}

// Require skips the test unless it runs as root with the named tools on
// PATH; under CI=true a missing tool fails the test instead.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces (run the tests as root, e.g. sudo go test)")
	}
	var missing []string
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	var pkgs []string
	for _, tool := range missing {
		if p, ok := debianPackages[tool]; ok {
			pkgs = append(pkgs, p)
		} else {
			pkgs = append(pkgs, "the package with "+tool)
		}
	}
	msg := fmt.Sprintf("missing tools %v: make deps-test installs them (Debian: apt-get install -y %s); make unit runs the tests that need them",
		missing, strings.Join(pkgs, " "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// New creates the namespaces (named after the test and the process id, so
// parallel tests and runs don't collide) and removes them when the test ends,
// also on failure. The client end gets clientMAC.
func New(t testing.TB, clientMAC string) *Pair {
	t.Helper()
	Require(t)
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	base := fmt.Sprintf("wwt-%d-%08x", os.Getpid(), h.Sum32())
	p := &Pair{
		Server: base + "-a", Client: base + "-b",
		ServerIf: "srv0", ClientIf: "cli0",
		ServerIP: "10.201.0.1", ClientIP: "10.201.0.2", PrefixLen: 24,
		ClientMAC: clientMAC,
	}
	for _, ns := range []string{p.Server, p.Client} {
		ns := ns
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Logf("remove namespace %s: %v: %s", ns, err, out)
			}
		})
	}
	pfx := fmt.Sprintf("/%d", p.PrefixLen)
	run(t, "ip", "-n", p.Server, "link", "add", p.ServerIf, "type", "veth", "peer", "name", p.ClientIf, "netns", p.Client)
	run(t, "ip", "-n", p.Client, "link", "set", p.ClientIf, "address", clientMAC)
	run(t, "ip", "-n", p.Server, "addr", "add", p.ServerIP+pfx, "dev", p.ServerIf)
	run(t, "ip", "-n", p.Client, "addr", "add", p.ClientIP+pfx, "dev", p.ClientIf)
	for _, nsIf := range [][2]string{{p.Server, p.ServerIf}, {p.Client, p.ClientIf}} {
		run(t, "ip", "-n", nsIf[0], "link", "set", "lo", "up")
		run(t, "ip", "-n", nsIf[0], "link", "set", nsIf[1], "up")
	}
	for _, nsIf := range [][2]string{{p.Server, p.ServerIf}, {p.Client, p.ClientIf}} {
		p.waitUp(t, nsIf[0], nsIf[1])
	}
	return p
}

// waitUp polls until the interface reports carrier.
func (p *Pair) waitUp(t testing.TB, ns, ifname string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("ip", "-n", ns, "-o", "link", "show", "dev", ifname).CombinedOutput()
		if err == nil && bytes.Contains(out, []byte("LOWER_UP")) && bytes.Contains(out, []byte("state UP")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s in %s not up: %s", ifname, ns, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SetClientMAC changes the client end's MAC.
func (p *Pair) SetClientMAC(t testing.TB, mac string) {
	t.Helper()
	run(t, "ip", "-n", p.Client, "link", "set", p.ClientIf, "down")
	run(t, "ip", "-n", p.Client, "link", "set", p.ClientIf, "address", mac)
	run(t, "ip", "-n", p.Client, "link", "set", p.ClientIf, "up")
	p.waitUp(t, p.Client, p.ClientIf)
	p.waitUp(t, p.Server, p.ServerIf)
	p.ClientMAC = mac
}

// ClientCommand returns name args... to be run in the client namespace.
func (p *Pair) ClientCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return nsCommand(ctx, p.Client, name, args...)
}

// ServerCommand returns name args... to be run in the server namespace.
func (p *Pair) ServerCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return nsCommand(ctx, p.Server, name, args...)
}

// nsCommand runs name in namespace ns. The process is killed if the test
// binary dies (e.g. on a test timeout, which skips cleanups), so no VM or
// daemon outlives it.
func nsCommand(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// InServer runs fn on a new goroutine whose OS thread has entered the
// server namespace; sockets fn opens live there. The thread is never
// unlocked, so it exits with the goroutine instead of returning to the
// scheduler in the wrong namespace. The returned channel is closed when fn
// returns. Goroutines that fn starts do not inherit the namespace, but the
// sockets they use do.
func (p *Pair) InServer(t testing.TB, fn func()) <-chan struct{} {
	return inNamespace(t, p.Server, fn)
}

// InClient is InServer for the client namespace.
func (p *Pair) InClient(t testing.TB, fn func()) <-chan struct{} {
	return inNamespace(t, p.Client, fn)
}

func inNamespace(t testing.TB, ns string, fn func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			t.Errorf("open namespace %s: %v", ns, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			t.Errorf("enter namespace %s: %v", ns, err)
			return
		}
		fn()
	}()
	return done
}

// StartServer runs run(ctx) in the server namespace, waits until ready is
// closed (failing the test if run returns first or 10 s pass) and returns a
// stop function (also registered with t.Cleanup; safe to call twice) that
// cancels ctx, waits for run and reports its error.
func (p *Pair) StartServer(t testing.TB, run func(context.Context) error, ready <-chan struct{}) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	done := p.InServer(t, func() { errc <- run(ctx) })
	select {
	case <-ready:
	case <-done:
		cancel()
		t.Fatalf("server did not start: %v", <-errc)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("server did not start in time")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			if err := <-errc; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
