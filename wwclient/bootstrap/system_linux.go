package bootstrap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/wwcluster/ww/wwclient/selabel"
	"golang.org/x/sys/unix"
)

// OS is the real System (Linux).
type OS struct{}

var _ System = OS{}

// MountPoint implements System.
func (OS) MountPoint(p string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return false, err
	}
	if err := unix.Stat(filepath.Dir(filepath.Clean(p)), &parent); err != nil {
		return false, err
	}
	return st.Dev != parent.Dev, nil
}

// Mount implements System.
func (OS) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}

// Unmount implements System.
func (OS) Unmount(target string, flags int) error { return unix.Unmount(target, flags) }

// MkdirAll implements System.
func (OS) MkdirAll(p string, perm fs.FileMode) error { return os.MkdirAll(p, perm) }

// ReadFile implements System.
func (OS) ReadFile(p string) ([]byte, error) { return os.ReadFile(p) }

// Exists implements System.
func (OS) Exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Sethostname implements System.
func (OS) Sethostname(name string) error { return unix.Sethostname([]byte(name)) }

// Chdir implements System.
func (OS) Chdir(p string) error { return unix.Chdir(p) }

// Chroot implements System.
func (OS) Chroot(p string) error { return unix.Chroot(p) }

// CopyTree implements System.
func (OS) CopyTree(src, dst string, label LabelFunc) error { return CopyTree(src, dst, label) }

// OverlayTree implements System.
func (OS) OverlayTree(src, dst string) error { return OverlayTree(src, dst) }

// FileContexts implements System: the policy's file_contexts, matched in Go
// (package selabel) as libselinux does.
func (OS) FileContexts(selinuxType string) (LabelFunc, error) {
	c, err := selabel.LoadContexts(FileContextsDir(selinuxType))
	if err != nil {
		return nil, err
	}
	return c.Lookup, nil
}

// RemoveTree implements System. As a safety net it refuses unless this
// process is PID 1 and dir is on a ramfs/tmpfs (the initramfs), so that a
// bootstrap run by mistake on a booted system cannot wipe its root.
func (OS) RemoveTree(dir string) error {
	if os.Getpid() != 1 {
		return fmt.Errorf("refusing to delete the contents of %s: not PID 1", dir)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if sfs.Type != unix.RAMFS_MAGIC && sfs.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("refusing to delete the contents of %s: not a ramfs/tmpfs (type %#x)", dir, sfs.Type)
	}
	return RemoveTree(dir)
}

// Run implements System; the program's output goes to our stdout/stderr
// (the console).
func (OS) Run(p string, args ...string) error {
	cmd := exec.Command(p, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// Start implements System.
func (OS) Start(p string, args, env []string, logPath string) (int, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return 0, err
	}
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOCTTY, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open log %s: %w", logPath, err)
	}
	defer out.Close()
	cmd := &exec.Cmd{
		Path:        p,
		Args:        args,
		Env:         env,
		Dir:         "/",
		Stdout:      out,
		Stderr:      out,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	// not waited for: after exec, init reaps it
	_ = cmd.Process.Release()
	return pid, nil
}

// EvalSymlinks implements System.
func (OS) EvalSymlinks(p string) (string, error) { return filepath.EvalSymlinks(p) }

// KeepExecContext implements System: it writes the thread's current
// context as its exec context. The exec context is per thread, so the
// goroutine stays locked to this thread, and Exec must follow on it.
func (OS) KeepExecContext() error {
	runtime.LockOSThread() // never unlocked: the process is about to exec
	cur, err := os.ReadFile("/proc/thread-self/attr/current")
	if err != nil {
		return err
	}
	ctx := strings.TrimRight(string(cur), "\x00\n")
	if ctx == "" {
		return errors.New("no current SELinux context")
	}
	// no O_CREATE: the policy refuses "create" on attr files
	f, err := os.OpenFile("/proc/thread-self/attr/exec", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte(ctx)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LabelTree implements System.
func (OS) LabelTree(dir string, label LabelFunc) error { return LabelTree(dir, label) }

// Exec implements System.
func (OS) Exec(p string, argv, env []string) error { return syscall.Exec(p, argv, env) }

// Reboot implements System.
func (OS) Reboot() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}

// Sleep implements System.
func (OS) Sleep(d time.Duration) { time.Sleep(d) }

// SetupConsole implements System: when the kernel could not open
// /dev/console for init (no /dev/console in the initramfs), stdin, stdout
// and stderr are opened on it now that devtmpfs is mounted.
func (OS) SetupConsole() error {
	var st unix.Stat_t
	if unix.Fstat(1, &st) == nil {
		return nil
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/console: %w", err)
	}
	var errs []error
	for _, n := range []int{0, 1, 2} {
		if err := unix.Dup3(fd, n, 0); err != nil {
			errs = append(errs, err)
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
	return errors.Join(errs...)
}
