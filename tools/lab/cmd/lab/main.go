// Command lab boots QEMU nodes over PXE from wwserver in a private network
// namespace (`make lab`). It builds nothing: it uses the binaries in --bin and
// the image in --image. It streams the first node's serial console, prints
// `wwserver status` once the node has booted, and tears everything down
// (processes it started, namespace, bridge, taps) on Ctrl-C or when the
// node's QEMU exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wwcluster/ww/tools/lab"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		binDir   = flag.String("bin", "bin", "directory with wwserver and wwclient")
		image    = flag.String("image", "build/image", "image directory from initramfs/build.sh (or its rootfs/)")
		firmware = flag.String("firmware", "bios", "node firmware: bios (SeaBIOS + iPXE ROM), uefi (OVMF PXE), uefi-ipxe (OVMF + QEMU's iPXE EFI ROM) or uefi-secureboot (OVMF Secure Boot: shim + GRUB)")
		sbDir    = flag.String("secureboot", "build/secureboot", "directory with shimx64.efi.signed and grubnetx64.efi.signed (make bootloaders), for uefi-secureboot")
		nodes    = flag.Int("nodes", 1, "number of nodes to boot (the first one's console is shown)")
		dir      = flag.String("dir", "", "work directory (default: a temporary one, removed at exit)")
		keep     = flag.Bool("keep", false, "keep the work directory at exit")
		console  = flag.Bool("console", false, "interactive serial console of the first node (Ctrl-A X quits)")
		interval = flag.String("update-interval", "10s", "wwclient update interval in the lab tree")
		timeout  = flag.Duration("boot-timeout", 5*time.Minute, "how long to wait for the booted line")
		verbose  = flag.Bool("v", false, "debug logging")
	)
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	fw := lab.Firmware(*firmware)
	secureBoot := *firmware == "uefi-secureboot"
	if secureBoot {
		fw = lab.UEFI
	}
	if fw != lab.BIOS && fw != lab.UEFI && fw != lab.UEFIIPXE {
		log.Error("bad --firmware", "firmware", *firmware)
		return 2
	}
	if *nodes < 1 {
		log.Error("--nodes must be at least 1")
		return 2
	}
	if err := lab.CheckHost(); err != nil {
		log.Error("host not ready for the lab", "err", err)
		return 1
	}
	paths, err := lab.FindPaths(*binDir, *image)
	if err != nil {
		log.Error("missing pieces (make build image; apt-get install --no-install-recommends "+strings.Join(lab.AptPackages, " ")+")", "err", err)
		return 1
	}

	// With `make lab | tee log`, Ctrl-C kills tee too; a write to the broken
	// pipe must not kill the lab before it has torn the namespace down.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	l, err := lab.New(ctx, lab.Options{Dir: *dir, Keep: *keep, Paths: paths, Logger: log})
	if err != nil {
		log.Error("create lab", "err", err)
		return 1
	}
	defer func() {
		if err := l.Close(); err != nil {
			log.Error("teardown", "err", err)
		}
		if *keep || *dir != "" {
			log.Info("work directory kept", "dir", l.Dir)
		}
	}()

	var ns []lab.Node
	for i := 1; i <= *nodes; i++ {
		n := lab.LabNode(i)
		if secureBoot {
			n.Bootloader = "grub"
		}
		ns = append(ns, n)
	}
	tree := lab.TreeOptions{Nodes: ns, UpdateInterval: *interval, InitKernelArgs: true}
	if secureBoot {
		dir, err := filepath.Abs(*sbDir)
		if err != nil {
			log.Error("bad --secureboot", "err", err)
			return 2
		}
		tree.Shim, tree.GRUB = filepath.Join(dir, "shimx64.efi.signed"), filepath.Join(dir, "grubnetx64.efi.signed")
	}
	if err := l.WriteTree(ctx, tree); err != nil {
		log.Error("write tree", "err", err)
		return 1
	}
	if _, err := l.StartServer(ctx); err != nil {
		log.Error("start wwserver", "err", err, "log", l.ServerLog())
		return 1
	}
	// wwserver listens inside the lab's namespace: a plain `wwserver
	// status` on the host cannot find it. Check the command that can,
	// before telling the user about it.
	statusCmd := lab.ShellQuote(l.StatusCommand())
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, serr := l.StatusText(qctx)
	cancel()
	if serr != nil {
		log.Error("the status command does not work", "cmd", statusCmd, "err", serr)
		return 1
	}

	var first *lab.VM
	started := time.Now() // boot time: from QEMU start to the node's booted line
	for i, n := range ns {
		o := lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: fw, SecureBoot: secureBoot}
		if i == 0 && *console {
			o.Console, o.Stdin = os.Stdout, os.Stdin
		}
		vm, err := l.StartVM(ctx, o)
		if err != nil {
			log.Error("start VM", "node", n.Name, "err", err)
			return 1
		}
		if i == 0 {
			first = vm
		}
	}
	log.Info("lab running; Ctrl-C tears it down", "ns", l.NS, "server", l.ServerURL(), "tree", l.TreeDir,
		"server_log", l.ServerLog(), "node", first.Name, "firmware", fw)
	fmt.Fprintf(os.Stderr, "\nwwserver status from another terminal (as root; checked just now):\n  %s\n\n", statusCmd)

	followDone := make(chan struct{})
	if !*console {
		go func() {
			defer close(followDone)
			_ = lab.Follow(ctx, first.SerialLog, os.Stdout, first.Done())
		}()
	} else {
		close(followDone)
	}
	nl := "\n"
	if *console {
		nl = "\r\n" // the terminal is in raw mode
	}

	bctx, cancel := context.WithTimeout(ctx, *timeout)
	line, err := first.WaitForLine(bctx, "booted: node "+first.Name)
	cancel()
	code := 0
	switch {
	case err == nil:
		log.Info("node booted", "line", line, "boot_seconds", fmt.Sprintf("%.1f", time.Since(started).Seconds()),
			"firmware", fw, "note", "from QEMU start to the booted line, TCG (no KVM)")
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		_, serr := l.WaitStatus(sctx, first.Name+" at RUNTIME_OVERLAY", func(s *lab.Status) bool {
			n, ok := s.Node(first.Name)
			return ok && n.Stage == "RUNTIME_OVERLAY"
		})
		cancel()
		if serr != nil {
			log.Warn("status", "err", serr)
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		text, terr := l.StatusText(qctx)
		cancel()
		if terr != nil {
			log.Warn("wwserver status", "err", terr)
		}
		fmt.Print(nl + "==== wwserver status ====" + nl + strings.ReplaceAll(text, "\n", nl) + "=========================" + nl +
			"the same from another terminal, as root:" + nl + "  " + statusCmd + nl)
	case errors.Is(err, lab.ErrExited):
		log.Error("the node's QEMU exited before it booted", "qemu_log", lab.Tail(first.QEMULog(), 20))
		code = 1
	case ctx.Err() != nil:
		log.Info("interrupted")
		return 0
	default:
		log.Error("node did not boot", "err", err)
		code = 1
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "---- wwserver log (tail) ----\n%s\n", lab.Tail(l.ServerLog(), 30))
		return code
	}

	select {
	case <-ctx.Done():
		log.Info("interrupted")
	case <-first.Done():
		log.Info("the node's QEMU exited")
	}
	stop()
	<-followDone
	return 0
}
