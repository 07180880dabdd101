package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wwcluster/ww/server/image"
)

// busyboxTar packs a root filesystem with the host's static busybox (the
// Makefile's deps install busybox-static) as a .tar.gz.
func busyboxTar(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox-static not installed (make deps)")
	}
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "boot", "etc"} {
		os.MkdirAll(filepath.Join(rootfs, d), 0o755)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(rootfs, "bin/busybox"), data, 0o755)
	os.Symlink("busybox", filepath.Join(rootfs, "bin/sh"))
	os.WriteFile(filepath.Join(rootfs, "boot/vmlinuz-6.1.0-9-amd64"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc/os-release"), []byte("ID=bb\n"), 0o644)
	out := filepath.Join(dir, "rootfs.tar.gz")
	if b, err := exec.Command("tar", "-C", rootfs, "-czf", out, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, b)
	}
	return out
}

func mountsUnder(t *testing.T, dir string) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), dir)
}

// image import → list → exec (changes the image; /proc, /dev, resolv.conf
// inside; nothing mounted outside; exit codes and signals pass through) →
// shell → delete (refused while used).
func TestImageCommands(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root (chroot, mount namespace) and builds binaries")
	}
	wwserver, wwclient := sharedBinaries(t)
	root := filepath.Join(t.TempDir(), "tree")
	runCLI(t, wwserver, "init", root, "--wwclient", wwclient, "--address", "127.0.0.1")
	src := busyboxTar(t)

	out := runCLI(t, wwserver, "image", "import", src, "bb", "--root", root)
	if !strings.Contains(out, "imported") || !strings.Contains(out, "rootfs-tar") {
		t.Errorf("import: %s", out)
	}
	runCLI(t, wwserver, "node", "add", "b[1-2]", "--image", "bb", "--root", root)
	var infos []image.Info
	if err := json.Unmarshal([]byte(runCLI(t, wwserver, "image", "list", "--json", "--root", root)), &infos); err != nil {
		t.Fatal(err)
	}
	var bb *image.Info
	for i := range infos {
		if infos[i].Name == "bb" {
			bb = &infos[i]
		}
	}
	if bb == nil || bb.Kernel != "boot/vmlinuz-6.1.0-9-amd64" || strings.Join(bb.Nodes, ",") != "b1,b2" || bb.Files < 6 || bb.Size < 100000 {
		t.Fatalf("image list: %+v", bb)
	}

	rootfs := filepath.Join(root, "images", "bb", "rootfs")
	script := `echo changed > /etc/marker; grep -q "^proc /proc proc" /proc/mounts && echo proc-ok; ` +
		`test -c /dev/null && echo dev-ok; test -d /sys/class && echo sys-ok; cat /etc/resolv.conf`
	out = runCLI(t, wwserver, "image", "exec", "bb", "--root", root, "--", "sh", "-c", script)
	for _, want := range []string{"proc-ok", "dev-ok", "sys-ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("exec output lacks %s:\n%s", want, out)
		}
	}
	if host, err := os.ReadFile("/etc/resolv.conf"); err == nil && !strings.Contains(out, strings.TrimSpace(string(host))) {
		t.Errorf("host resolv.conf not visible in the image:\n%s", out)
	}
	if data, _ := os.ReadFile(filepath.Join(rootfs, "etc/marker")); string(data) != "changed\n" {
		t.Errorf("exec did not change the image: %q", data)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "etc/resolv.conf")); !os.IsNotExist(err) {
		t.Errorf("resolv.conf placeholder left in the image: %v", err)
	}
	if n := mountsUnder(t, rootfs); n != 0 {
		t.Errorf("%d mounts left under the image", n)
	}
	cmd := exec.Command(wwserver, "image", "exec", "bb", "--root", root, "--", "sh", "-c", "exit 7")
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 7 {
		t.Errorf("exit code not passed through: %v", err)
	}

	// A signal to image exec ends the command; the mounts never showed
	// outside its namespace.
	cmd = exec.Command(wwserver, "image", "exec", "bb", "--root", root, "--", "sh", "-c", "echo ready; exec sleep 60")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("exec: %q %v", line, err)
	}
	if n := mountsUnder(t, rootfs); n != 0 {
		t.Errorf("%d mounts of image exec visible outside its namespace", n)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) {
			t.Errorf("after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("image exec did not end on SIGTERM")
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "etc/resolv.conf")); !os.IsNotExist(err) {
		t.Errorf("resolv.conf placeholder left after SIGTERM: %v", err)
	}

	shell := exec.Command(wwserver, "image", "shell", "bb", "--root", root)
	shell.Stdin = strings.NewReader("echo from-shell $((6*7))\n")
	if out, err := shell.CombinedOutput(); err != nil || !strings.Contains(string(out), "from-shell 42") {
		t.Errorf("shell: %v\n%s", err, out)
	}

	del := exec.Command(wwserver, "image", "delete", "bb", "--root", root)
	if out, err := del.CombinedOutput(); err == nil || !strings.Contains(string(out), "used by 2 node(s): b1,b2") {
		t.Errorf("delete of a used image: %v %s", err, out)
	}
	runCLI(t, wwserver, "image", "delete", "bb", "--force", "--root", root)
	if _, err := os.Stat(filepath.Join(root, "images", "bb")); !os.IsNotExist(err) {
		t.Errorf("image still there after delete --force")
	}
}

// kill -9 of image exec: the command is told (the helper's parent-death
// signal, SIGTERM, passed on), and as long as anything started in the
// image runs, the image stays locked: an import of the same name is
// refused instead of replacing the tree under it.
func TestImageExecParentKilled(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root (chroot, mount namespace) and builds binaries")
	}
	wwserver, wwclient := sharedBinaries(t)
	root := filepath.Join(t.TempDir(), "tree")
	runCLI(t, wwserver, "init", root, "--wwclient", wwclient, "--address", "127.0.0.1")
	src := busyboxTar(t)
	runCLI(t, wwserver, "image", "import", src, "bb", "--root", root, "-q")
	rootfs := filepath.Join(root, "images", "bb", "rootfs")

	// start runs image exec with pipes; the script prints "ready PID".
	start := func(script string) (*exec.Cmd, *os.File, *bufio.Reader, int) {
		t.Helper()
		inR, inW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { inW.Close(); outR.Close() })
		cmd := exec.Command(wwserver, "image", "exec", "bb", "--root", root, "--", "sh", "-c", script)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, outW
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		inR.Close()
		outW.Close()
		out := bufio.NewReader(outR)
		line, err := out.ReadString('\n')
		var pid int
		if _, serr := fmt.Sscanf(line, "ready %d", &pid); err != nil || serr != nil {
			t.Fatalf("image exec: %q %v", line, err)
		}
		// Whatever happens, nothing this test started outlives it.
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
		return cmd, inW, out, pid
	}
	// untilEOF reads the output to its end: every process that held it
	// (image exec, the helper, the command) has ended.
	untilEOF := func(out *bufio.Reader) string {
		t.Helper()
		done := make(chan string, 1)
		go func() {
			rest, _ := io.ReadAll(out)
			done <- string(rest)
		}()
		select {
		case s := <-done:
			return s
		case <-time.After(20 * time.Second):
			t.Fatal("the command still runs 20s after image exec was killed")
		}
		return ""
	}
	importBB := func() (string, error) {
		out, err := exec.Command(wwserver, "image", "import", src, "bb", "--root", root, "-q").CombinedOutput()
		return string(out), err
	}
	killParent := func(cmd *exec.Cmd) {
		t.Helper()
		cmd.Process.Kill()
		if err := cmd.Wait(); err == nil {
			t.Fatal("image exec survived SIGKILL")
		}
	}

	// A command that ignores SIGTERM runs on: the image stays locked.
	cmd, stdin, out, _ := start(`trap "" TERM; echo ready $$; read x; echo bye`)
	killParent(cmd)
	if msg, err := importBB(); err == nil || !strings.Contains(msg, "in use") {
		t.Errorf("import while the command runs: %v %s", err, msg)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "bin/busybox")); err != nil {
		t.Errorf("the tree under the running command changed: %v", err)
	}
	stdin.Close()
	if rest := untilEOF(out); !strings.Contains(rest, "bye") {
		t.Errorf("command output after its parent died: %q", rest)
	}
	if msg, err := importBB(); err != nil {
		t.Fatalf("import after the command ended: %v %s", err, msg)
	}

	// A command that honours SIGTERM ends with its parent.
	cmd, _, out, _ = start(`echo ready $$; exec sleep 60`)
	killParent(cmd)
	untilEOF(out)
	if msg, err := importBB(); err != nil {
		t.Fatalf("import after the command ended: %v %s", err, msg)
	}
	if n := mountsUnder(t, rootfs); n != 0 {
		t.Errorf("%d mounts left under the image", n)
	}

	// A process the command left running keeps the image locked.
	out2, err := exec.Command(wwserver, "image", "exec", "bb", "--root", root, "--", "sh", "-c",
		`sleep 60 </dev/null >/dev/null 2>&1 & echo $!`).Output()
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(out2), &pid); err != nil {
		t.Fatalf("background pid: %q", out2)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if msg, err := importBB(); err == nil || !strings.Contains(msg, "in use") {
		t.Errorf("import while a background process of image exec runs: %v %s", err, msg)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	if _, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, 20000); err != nil {
		t.Fatal(err)
	}
	if msg, err := importBB(); err != nil {
		t.Fatalf("import after the background process ended: %v %s", err, msg)
	}
}
