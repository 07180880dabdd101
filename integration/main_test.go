// Package integration boots real firmware in QEMU (TCG) over PXE from a real
// wwserver, inside network namespaces the tests create (tools/lab).
//
// Needs: root, /dev/net/tun, qemu-system-x86, ipxe, ovmf, the binaries
// (WW_BIN, default ../bin) and the lab image (WW_IMAGE, default ../build/image).
// Without them the tests skip, except under CI=true, where they fail: CI
// (make integration) always provides them.
//
// WW_KEEP=1 keeps each test's work directory (tree, serial and server logs).
package integration

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/etcdstate/etcdtest"
	"github.com/wwcluster/ww/tools/lab"
)

// rootCtx is cancelled on SIGINT/SIGTERM, so that the running tests fail
// fast and their cleanups tear the labs down.
var rootCtx context.Context

func TestMain(m *testing.M) {
	etcdtest.MaybeRunChild() // the child etcd of TestFailoverServerKilled
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rootCtx = ctx
	code := m.Run()
	stop()
	os.Exit(code)
}

func inCI() bool { return os.Getenv("CI") == "true" }

// unavailable skips the test, or fails it under CI=true.
func unavailable(t *testing.T, err error) {
	t.Helper()
	if inCI() {
		t.Fatalf("integration prerequisites missing under CI=true: %v", err)
	}
	t.Skipf("integration prerequisites missing (set up with make integration): %v", err)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// paths finds what the tests need; needServer false only needs QEMU and the
// image (direct boot).
func paths(t *testing.T, needServer bool) lab.Paths {
	t.Helper()
	if err := lab.CheckHost(); err != nil {
		unavailable(t, err)
	}
	p, err := lab.FindPaths(envOr("WW_BIN", "../bin"), envOr("WW_IMAGE", "../build/image"))
	if err != nil && !needServer {
		// Only the image and QEMU matter here.
		var keep []error
		for _, e := range unwrapJoin(err) {
			if !strings.Contains(e.Error(), "make build") {
				keep = append(keep, e)
			}
		}
		err = errors.Join(keep...)
	}
	if err != nil {
		unavailable(t, err)
	}
	return p
}

func unwrapJoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// testLog is a slog logger writing through t.Log.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// env is one test's lab: namespace, tree, wwserver.
type env struct {
	t   *testing.T
	ctx context.Context
	lab *lab.Lab
	vms []*lab.VM
	// single: the nodes boot single-stage (boot = "initrd", GRUB, or no
	// server); otherwise waitBooted checks they came through the second
	// stage, the default.
	single bool
}

// newEnv creates a lab with the given nodes and the lab image, and starts
// wwserver.
func newEnv(t *testing.T, timeout time.Duration, nodes []lab.Node) *env {
	t.Helper()
	return newEnvWith(t, timeout, envOptions{Tree: lab.TreeOptions{Nodes: nodes}})
}

// envOptions for newEnvWith.
type envOptions struct {
	// Image is the image directory (or its rootfs) to serve; empty: the
	// lab image (WW_IMAGE).
	Image string
	// Tree for WriteTree; UpdateInterval defaults to 5s.
	Tree lab.TreeOptions
	// Setup, if set, runs on the served tree after WriteTree and before
	// wwserver starts (e.g. to add an overlay).
	Setup func(treeDir string) error
	// SetupLab, if set, runs after Setup with the lab (namespace up,
	// tree written, wwserver not started yet).
	SetupLab func(l *lab.Lab) error
	// Paths, if set, changes the found paths before the lab is created
	// (e.g. a wwserver from an installed package).
	Paths func(p *lab.Paths)
}

// newEnvWith creates a lab and starts wwserver. The test's hard timeout
// bounds everything; on failure the logs' tails are printed, and the lab is
// torn down in every case.
func newEnvWith(t *testing.T, timeout time.Duration, o envOptions) *env {
	t.Helper()
	p := paths(t, true)
	if o.Image != "" {
		img, err := lab.FindPaths(envOr("WW_BIN", "../bin"), o.Image)
		if err != nil {
			unavailable(t, err)
		}
		p.Image, p.Kernel = img.Image, img.Kernel
	}
	if o.Paths != nil {
		o.Paths(&p)
	}
	ctx, cancel := context.WithTimeout(rootCtx, timeout)
	t.Cleanup(cancel)
	dir := ""
	keep := os.Getenv("WW_KEEP") == "1"
	if keep {
		var err error
		dir, err = os.MkdirTemp("", "wwlab-"+t.Name()+"-")
		if err != nil {
			t.Fatal(err)
		}
	}
	l, err := lab.New(ctx, lab.Options{Paths: p, Logger: testLog(t), Dir: dir, Keep: keep})
	if err != nil {
		t.Fatalf("create lab: %v", err)
	}
	// A boot written in the tree wins; unset, GRUB nodes default to initrd.
	e := &env{t: t, ctx: ctx, lab: l, single: o.Tree.Boot == "initrd"}
	for _, n := range o.Tree.Nodes {
		e.single = e.single || (o.Tree.Boot == "" && n.Boot == "" && n.Bootloader == "grub") || n.Boot == "initrd"
	}
	t.Cleanup(func() {
		if t.Failed() {
			e.dumpLogs()
		}
		if err := l.Close(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if keep {
			t.Logf("work directory kept: %s", l.Dir)
		}
	})
	if o.Tree.UpdateInterval == "" {
		o.Tree.UpdateInterval = "5s"
	}
	if err := l.WriteTree(ctx, o.Tree); err != nil {
		t.Fatalf("write tree: %v", err)
	}
	if o.Setup != nil {
		if err := o.Setup(l.TreeDir); err != nil {
			t.Fatalf("set up tree: %v", err)
		}
	}
	if o.SetupLab != nil {
		if err := o.SetupLab(l); err != nil {
			t.Fatalf("set up lab: %v", err)
		}
	}
	if _, err := l.StartServer(ctx); err != nil {
		t.Fatalf("start wwserver: %v", err)
	}
	return e
}

func (e *env) dumpLogs() {
	for _, vm := range e.vms {
		e.t.Logf("---- %s serial console (tail) ----\n%s", vm.Name, vm.SerialTail(40))
		if q := strings.TrimSpace(lab.Tail(vm.QEMULog(), 10)); q != "" && !strings.HasPrefix(q, "(") {
			e.t.Logf("---- %s QEMU stderr (tail) ----\n%s", vm.Name, q)
		}
	}
	e.t.Logf("---- wwserver log (tail) ----\n%s", lab.Tail(e.lab.ServerLog(), 40))
	qctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if st, err := e.lab.Status(qctx); err == nil {
		e.t.Logf("---- wwserver status --json ----\n%s", st.Raw)
	}
}

func (e *env) startVM(o lab.VMOptions) *lab.VM {
	e.t.Helper()
	vm, err := e.lab.StartVM(e.ctx, o)
	if err != nil {
		e.t.Fatalf("start VM %s: %v", o.Name, err)
	}
	e.vms = append(e.vms, vm)
	return vm
}

// waitBooted waits for the node's "booted: node NAME" console line.
func (e *env) waitBooted(vm *lab.VM, name string) time.Duration {
	e.t.Helper()
	line, err := vm.WaitForLine(e.ctx, "booted: node "+name)
	if err != nil {
		e.t.Fatalf("%s: %v", vm.Name, err)
	}
	d := time.Since(vm.Started).Round(time.Second)
	e.t.Logf("%s (%s): %q %s after QEMU started", vm.Name, vm.Firmware, line, d)
	e.checkPath(vm)
	return d
}

// checkPath checks from the console which way the node got its image:
// through the second stage (wwclient fetched the chunked image) unless the
// env boots single-stage (the kernel unpacked image.img.gz).
func (e *env) checkPath(vm *lab.VM) {
	e.t.Helper()
	serial := vm.SerialTail(1000000)
	twoStage := strings.Contains(serial, "wwinit: image unpacked:")
	if e.single && twoStage {
		e.t.Errorf("%s: booted through the second stage, want single-stage", vm.Name)
	}
	if !e.single && (!twoStage || strings.Contains(serial, "image.img.gz")) {
		e.t.Errorf("%s: did not boot through the second stage (no \"wwinit: image unpacked:\" on the console, or iPXE loaded image.img.gz)", vm.Name)
	}
	for _, l := range strings.Split(serial, "\n") {
		if strings.Contains(l, "wwinit: image") {
			e.t.Logf("%s console: %s", vm.Name, strings.TrimSpace(l))
		}
	}
}

// waitRuntime waits until status shows the node at RUNTIME_OVERLAY with a
// heartbeat, then until a later heartbeat moves last_seen and the uptime
// forward (the agent keeps heartbeating on its interval).
func (e *env) waitRuntime(name string) lab.NodeStatus {
	e.t.Helper()
	st, err := e.lab.WaitStatus(e.ctx, name+" at RUNTIME_OVERLAY with a heartbeat", func(s *lab.Status) bool {
		n, ok := s.Node(name)
		return ok && n.Stage == "RUNTIME_OVERLAY" && n.Heartbeat != nil && n.LastSeen > 0
	})
	if err != nil {
		e.t.Fatal(err)
	}
	first, _ := st.Node(name)
	st, err = e.lab.WaitStatus(e.ctx, name+" heartbeats again", func(s *lab.Status) bool {
		n, ok := s.Node(name)
		return ok && n.LastSeen > first.LastSeen && n.Heartbeat != nil &&
			n.Heartbeat.UptimeSeconds > first.Heartbeat.UptimeSeconds
	})
	if err != nil {
		e.t.Fatal(err)
	}
	n, _ := st.Node(name)
	e.t.Logf("%s: stage %s, sent %s, last_seen %d -> %d, uptime %ds -> %ds, runtime_etag %s",
		name, n.Stage, n.Sent, first.LastSeen, n.LastSeen, first.Heartbeat.UptimeSeconds, n.Heartbeat.UptimeSeconds, n.Heartbeat.RuntimeETag)
	return n
}
