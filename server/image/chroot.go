package image

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ChrootPath is the PATH commands run with inside an image.
const ChrootPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ExecOptions for Exec.
type ExecOptions struct {
	Tree string
	Name string
	Argv []string
	// Self re-executes this program as the helper: Self[0] is the
	// executable, the rest the arguments before "ROOTFS -- ARGV…"
	// (for wwserver: /proc/self/exe image __chroot).
	Self           []string
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Exec runs Argv chrooted into images/NAME/rootfs and returns its exit
// code. The helper runs in a private mount namespace (CLONE_NEWNS, mounts
// made private), so the /proc, /sys, /dev and resolv.conf mounts it makes
// vanish with it whatever way it ends. The image is locked against import
// and delete as long as anything started in it runs: the helper and the
// command inherit the lock (fd 3), so it outlives this process. When this
// process dies the helper gets SIGTERM (passed on to the command); when
// the helper dies the command gets SIGKILL.
func Exec(o ExecOptions) (int, error) {
	if err := checkName(o.Name); err != nil {
		return 0, err
	}
	if len(o.Argv) == 0 {
		return 0, errors.New("no command")
	}
	dir := filepath.Join(o.Tree, "images", o.Name)
	rootfs, err := filepath.Abs(filepath.Join(dir, "rootfs"))
	if err != nil {
		return 0, err
	}
	if fi, err := os.Stat(rootfs); err != nil || !fi.IsDir() {
		return 0, fmt.Errorf("image %s: no images/%s/rootfs", o.Name, o.Name)
	}
	lock, err := lockImage(dir, false)
	if err != nil {
		return 0, err
	}
	defer lock.Close()
	args := append(append(append([]string{}, o.Self[1:]...), rootfs, "--"), o.Argv...)
	cmd := exec.Command(o.Self[0], args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	cmd.ExtraFiles = []*os.File{lock} // fd 3: see InheritedLock
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGTERM}
	// The parent-death signal follows the thread that started the child:
	// this goroutine stays on it until the helper has ended.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Ctrl-C reaches the command through the terminal; this process waits.
	// SIGTERM and SIGHUP are passed on (the helper passes them to the command).
	signal.Ignore(os.Interrupt)
	defer signal.Reset(os.Interrupt)
	fw := catchSignals()
	defer fw.stop()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("run in image %s: %w", o.Name, err)
	}
	fw.forward(cmd.Process)
	err = cmd.Wait()
	code, err := exitStatus(err)
	if err != nil {
		return 0, fmt.Errorf("run in image %s: %w", o.Name, err)
	}
	return code, nil
}

// exitStatus is a finished command's exit code, 128+N for signal N.
func exitStatus(err error) (int, error) {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, err
}

// InheritedLock is the image lock Exec hands its helper as fd 3, or nil
// when fd 3 is not rootfs's image lock file.
func InheritedLock(rootfs string) *os.File {
	dir, err := filepath.EvalSymlinks(filepath.Dir(rootfs))
	if err != nil {
		return nil
	}
	want := filepath.Join(dir, lockFile)
	if got, err := os.Readlink("/proc/self/fd/3"); err != nil || got != want {
		return nil
	}
	return os.NewFile(3, want)
}

// ChrootHelper is the helper side of Exec, already in its own mount
// namespace: it mounts /proc, /sys, /dev and the host's resolv.conf into
// rootfs, runs argv chrooted, removes a resolv.conf it had to create, and
// returns the command's exit code. lock (the image lock, may be nil) is
// handed to the command as fd 3, so what it starts keeps the image locked.
func ChrootHelper(rootfs string, argv []string, lock *os.File, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(argv) == 0 {
		return 0, errors.New("no command")
	}
	// Caught from here on: a SIGTERM before the command runs must not end
	// this process before it removes what it created in the image.
	fw := catchSignals()
	defer fw.stop()
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	if err := mountAPIFS(root, rootfs); err != nil {
		return 0, err
	}
	created, err := bindResolvConf(root, rootfs, stderr)
	if err != nil {
		return 0, err
	}
	if created != "" {
		defer func() {
			_ = unix.Unmount(created, unix.MNT_DETACH)
			_ = root.Remove("etc/resolv.conf")
		}()
	}
	prog, err := lookPathIn(root, argv[0])
	if err != nil {
		return 127, err
	}
	cmd := &exec.Cmd{Path: prog, Args: argv, Dir: "/", Stdin: stdin, Stdout: stdout, Stderr: stderr}
	cmd.Env = []string{"PATH=" + ChrootPath, "HOME=/root", "LANG=C.UTF-8"}
	if term := os.Getenv("TERM"); term != "" {
		cmd.Env = append(cmd.Env, "TERM="+term)
	}
	if lock != nil {
		cmd.ExtraFiles = []*os.File{lock}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs, Pdeathsig: syscall.SIGKILL}
	signal.Ignore(os.Interrupt)
	runtime.LockOSThread() // for Pdeathsig, as in Exec
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return 127, fmt.Errorf("start %s in the image: %w", argv[0], err)
	}
	fw.forward(cmd.Process)
	err = cmd.Wait()
	return exitStatus(err)
}

// mountAPIFS mounts /proc, /sys and /dev in the image (in the helper's
// private mount namespace: they go when it ends).
func mountAPIFS(root *os.Root, rootfs string) error {
	mounts := []struct {
		name, src, fstype string
		flags             uintptr
	}{
		{"proc", "proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"sys", "/sys", "", unix.MS_BIND | unix.MS_REC},
		{"dev", "/dev", "", unix.MS_BIND | unix.MS_REC},
	}
	for _, m := range mounts {
		target, err := mountDir(root, rootfs, m.name)
		if err != nil {
			return fmt.Errorf("mount /%s: %w", m.name, err)
		}
		if err := unix.Mount(m.src, target, m.fstype, m.flags, ""); err != nil {
			return fmt.Errorf("mount /%s: %w", m.name, err)
		}
	}
	return nil
}

// mountDir returns the mount point /name of the image, made when missing.
// Mount points must be real directories of the image, never symlinks that
// could point at the host's own tree.
func mountDir(root *os.Root, rootfs, name string) (string, error) {
	fi, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		if err := root.Mkdir(name, 0o755); err != nil {
			return "", err
		}
		fi, err = root.Lstat(name)
	}
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("/%s in the image is not a directory", name)
	}
	return filepath.Join(rootfs, name), nil
}

// signalForwarder catches SIGTERM and SIGHUP from before a child starts
// (one arriving in between would otherwise kill this process before its
// cleanup) and passes them on to the child once it runs.
type signalForwarder struct {
	sigs chan os.Signal
	done chan struct{}
}

func catchSignals() *signalForwarder {
	f := &signalForwarder{sigs: make(chan os.Signal, 4), done: make(chan struct{})}
	signal.Notify(f.sigs, syscall.SIGTERM, syscall.SIGHUP)
	return f
}

// forward passes the caught signals (those already caught first) to p.
func (f *signalForwarder) forward(p *os.Process) {
	go func() {
		for {
			select {
			case s := <-f.sigs:
				_ = p.Signal(s)
			case <-f.done:
				return
			}
		}
	}()
}

func (f *signalForwarder) stop() {
	signal.Stop(f.sigs)
	close(f.done)
}

// bindResolvConf makes the host's name resolution visible in the image.
// It returns the mount point when it had to create the file (to remove it
// afterwards). A symlinked resolv.conf in the image is left alone.
func bindResolvConf(root *os.Root, rootfs string, stderr io.Writer) (string, error) {
	if _, err := os.Stat("/etc/resolv.conf"); err != nil {
		return "", nil // the host has none either
	}
	target := filepath.Join(rootfs, "etc", "resolv.conf")
	fi, err := root.Lstat("etc/resolv.conf")
	created := ""
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := root.MkdirAll("etc", 0o755); err != nil {
			return "", err
		}
		f, err := root.OpenFile("etc/resolv.conf", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return "", err
		}
		f.Close()
		created = target
	case err != nil:
		return "", err
	case !fi.Mode().IsRegular():
		fmt.Fprintln(stderr, "wwserver: /etc/resolv.conf in the image is not a regular file; name resolution is the image's own")
		return "", nil
	}
	if err := unix.Mount("/etc/resolv.conf", target, "", unix.MS_BIND, ""); err != nil {
		if created != "" {
			_ = root.Remove("etc/resolv.conf")
		}
		return "", fmt.Errorf("bind resolv.conf: %w", err)
	}
	return created, nil
}

// lookPathIn finds name in the image's PATH; the result is a path inside
// the chroot.
func lookPathIn(root *os.Root, name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range strings.Split(ChrootPath, ":") {
		p := path.Join(dir, name)
		rel := strings.TrimPrefix(p, "/")
		if fi, err := root.Stat(rel); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
		// An absolute symlink (/usr/bin/x -> /etc/alternatives/x) is not
		// followed here; execve resolves it inside the chroot.
		if fi, err := root.Lstat(rel); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in the image's PATH (%s)", name, ChrootPath)
}
