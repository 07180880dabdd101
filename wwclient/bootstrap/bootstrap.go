// Package bootstrap is the node's /init (PID 1 from the initramfs): it
// mounts the API file systems, reads wwclient.toml and the kernel command
// line, copies the root to a tmpfs and switches to it (root = "tmpfs"),
// sets the hostname, loads the SELinux policy when asked to, starts the
// wwclient agent and execs the image's init. Every step goes through the
// System interface so the sequence is tested without being PID 1.
//
// Any failure prints one line "wwinit: ERROR: <what>" on the console and
// then execs /bin/sh if the image has one, else reboots after a delay.
package bootstrap

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/wwclient/nodeconf"
)

// System is the operating system as the bootstrap uses it.
type System interface {
	// MountPoint reports whether path is a mount point (its device differs
	// from its parent's).
	MountPoint(path string) (bool, error)
	Mount(source, target, fstype string, flags uintptr, data string) error
	Unmount(target string, flags int) error
	MkdirAll(path string, perm fs.FileMode) error
	ReadFile(path string) ([]byte, error)
	// Exists reports whether path exists (following symlinks).
	Exists(path string) bool
	Sethostname(name string) error
	Chdir(path string) error
	Chroot(path string) error
	// CopyTree copies the tree at src into dst, staying on src's device
	// and skipping dst itself; with label set it labels the copies.
	CopyTree(src, dst string, label LabelFunc) error
	// OverlayTree lays the tree at src over the tree at dst, src winning
	// (two-stage boot: the overlays over the image).
	OverlayTree(src, dst string) error
	// FileContexts loads the file_contexts of the SELinux policy type.
	FileContexts(selinuxType string) (LabelFunc, error)
	// EvalSymlinks resolves every symlink in path.
	EvalSymlinks(path string) (string, error)
	// LabelTree labels an existing tree (on one device) in place.
	LabelTree(dir string, label LabelFunc) error
	// KeepExecContext makes the next Exec keep the caller's SELinux
	// context instead of taking the policy's exec transition.
	KeepExecContext() error
	// RemoveTree deletes the contents of dir that are on dir's device.
	RemoveTree(dir string) error
	// Run runs a program to completion.
	Run(path string, args ...string) error
	// Start starts a program in the background in a new session with
	// stdout and stderr appended to logPath.
	Start(path string, args, env []string, logPath string) (pid int, err error)
	// Exec replaces the process; it returns only on failure.
	Exec(path string, argv, env []string) error
	Reboot() error
	Sleep(d time.Duration)
	// SetupConsole makes sure stdin/stdout/stderr are open on the console
	// (called once /dev is mounted).
	SetupConsole() error
}

// Well-known paths and defaults.
const (
	NewRoot            = "/newroot"
	DefaultAgentPath   = "/usr/sbin/wwclient"
	DefaultAgentLog    = "/dev/console"
	DefaultRebootDelay = 30 * time.Second
	SELinuxConfig      = "/etc/selinux/config"
	LoadPolicy         = "/usr/sbin/load_policy"
	RescueShell        = "/bin/sh"
)

// Bootstrap is one boot. Set Sys and Console; the rest has defaults.
type Bootstrap struct {
	Sys         System
	Console     io.Writer // progress lines ("wwinit: …")
	Version     string
	Args        []string // argv; argv[1:] is passed on to init
	Env         []string // environment passed on to the agent and init
	ConfigPath  string   // default /etc/wwclient/wwclient.toml
	CmdlinePath string   // default /proc/cmdline
	AgentPath   string   // default /usr/sbin/wwclient
	AgentLog    string   // default /dev/console
	RebootDelay time.Duration
	// Image loads the image of a two-stage boot (wwimage= on the kernel
	// command line) into the new root; see twostage.go.
	Image ImageLoader
	// ImageTimeout bounds the whole image load (default 1 hour).
	ImageTimeout time.Duration
}

func (b *Bootstrap) defaults() {
	if b.ConfigPath == "" {
		b.ConfigPath = nodeconf.DefaultPath
	}
	if b.CmdlinePath == "" {
		b.CmdlinePath = nodeconf.DefaultCmdlinePath
	}
	if b.AgentPath == "" {
		b.AgentPath = DefaultAgentPath
	}
	if b.AgentLog == "" {
		b.AgentLog = DefaultAgentLog
	}
	if b.RebootDelay <= 0 {
		b.RebootDelay = DefaultRebootDelay
	}
	if b.Console == nil {
		b.Console = io.Discard
	}
}

func (b *Bootstrap) say(format string, args ...any) {
	fmt.Fprintf(b.Console, "wwinit: "+format+"\n", args...)
}

// Run boots. In production it does not return: it ends in exec of init,
// of the rescue shell, or in a reboot. It returns only when all of those
// failed (or, in tests, when the fake System's Exec/Reboot return).
func (b *Bootstrap) Run() {
	b.defaults()
	defer func() {
		if r := recover(); r != nil {
			b.rescue(fmt.Errorf("panic: %v", r))
		}
	}()
	b.rescue(b.boot())
}

// boot returns only on failure.
func (b *Bootstrap) boot() error {
	b.say("starting (wwclient %s)", b.Version)
	if err := b.mountAPI(); err != nil {
		return err
	}
	if err := b.Sys.SetupConsole(); err != nil {
		b.say("warning: console: %v", err)
	}
	eff, err := b.settings()
	if err != nil {
		return err
	}
	node := eff.Config.Node
	if node == "" {
		node = "(unnamed)"
	}
	b.say("node %s, hwaddr %s, server %s, root %s", node, orNone(eff.MAC), orNone(eff.Server), eff.Root)
	if eff.BadTmpfsSize != "" {
		b.say("warning: %s=%q ignored (want bytes with k, m or g, or N%%); the tmpfs root takes the kernel's default, half the RAM",
			nodeapi.ArgTmpfsSize, eff.BadTmpfsSize)
	}
	if eff.Image != "" {
		return b.bootTwoStage(eff) // twostage.go
	}

	// SELinux: with a tmpfs root the policy is loaded first, so that the
	// copy labels every file as it writes it (no second pass over the
	// tree); staying in the initramfs, setfiles labels it afterwards.
	sel := b.decideSELinux(eff)
	var label LabelFunc
	loaded := false
	if sel.Load && eff.Root != nodeconf.RootInitramfs {
		if loaded, err = b.loadPolicy(sel); err != nil {
			return err
		}
		if loaded {
			if label, err = b.Sys.FileContexts(sel.Type); err != nil {
				b.say("warning: SELinux: %v; labelling after the copy instead", err)
				label = nil
			}
		}
	}
	switch eff.Root {
	case nodeconf.RootInitramfs:
		b.say("root: staying in the initramfs")
	default:
		if label, err = b.toTmpfs(label, eff.TmpfsSize); err != nil {
			return err
		}
	}
	return b.finish(eff, sel, loaded, label)
}

// finish is the end of every boot, once the root is in place: hostname,
// SELinux policy and labels still to do, the agent, exec init.
func (b *Bootstrap) finish(eff nodeconf.Effective, sel SELinuxDecision, loaded bool, label LabelFunc) error {
	var err error
	if eff.Config.Node != "" {
		if err := b.Sys.Sethostname(eff.Config.Node); err != nil {
			return fmt.Errorf("set hostname %s: %w", eff.Config.Node, err)
		}
		b.say("hostname %s", eff.Config.Node)
	}
	if sel.Load && eff.Root == nodeconf.RootInitramfs {
		if loaded, err = b.loadPolicy(sel); err != nil {
			return err
		}
	}
	if loaded && label == nil {
		b.relabel(sel)
	}
	b.startAgent()

	if !b.Sys.Exists(eff.Init) {
		return fmt.Errorf("init %s not found in the image", eff.Init)
	}
	if loaded {
		b.initContext(eff.Init)
	}
	argv := append([]string{eff.Init}, tail(b.Args)...)
	b.say("exec %s", eff.Init)
	err = b.Sys.Exec(eff.Init, argv, b.env())
	return fmt.Errorf("exec %s: %w", eff.Init, err)
}

// toTmpfs switches to a tmpfs root, labelling the copy with label when set.
// It returns nil for label when the copy could not be labelled: setfiles
// relabels then.
func (b *Bootstrap) toTmpfs(label LabelFunc, size string) (LabelFunc, error) {
	start := time.Now()
	err := b.switchRoot(label, size)
	var lerr *LabelError
	if errors.As(err, &lerr) {
		b.say("warning: SELinux: %v; relabelling with setfiles", lerr)
		label, err = nil, nil
	}
	if err != nil {
		return label, fmt.Errorf("switch to tmpfs root: %w", err)
	}
	if label != nil {
		// the API file systems moved in were not copied: /dev and /run
		// are labelled in place (/proc and /sys get theirs from the policy)
		for _, d := range []string{"/dev", "/run"} {
			if err := b.Sys.LabelTree(d, label); err != nil {
				b.say("warning: SELinux: %v", err)
			}
		}
		b.say("root: switched to tmpfs, labelled as copied, in %s", time.Since(start).Round(10*time.Millisecond))
	} else {
		b.say("root: switched to tmpfs")
	}
	return label, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func tail(s []string) []string {
	if len(s) <= 1 {
		return nil
	}
	return s[1:]
}

func (b *Bootstrap) env() []string {
	env := append([]string(nil), b.Env...)
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			return env
		}
	}
	return append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

type apiMount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

// APIMounts are mounted first and moved into the new root.
var apiMounts = []apiMount{
	{"proc", "/proc", "proc", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", syscall.MS_NOSUID, "mode=0755"},
	{"tmpfs", "/run", "tmpfs", syscall.MS_NOSUID | syscall.MS_NODEV, "mode=0755"},
}

func (b *Bootstrap) mountAPI() error {
	for _, m := range apiMounts {
		if err := b.Sys.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", m.target, err)
		}
		if mp, err := b.Sys.MountPoint(m.target); err == nil && mp {
			continue // already mounted (by the kernel or a previous stage)
		}
		err := b.Sys.Mount(m.source, m.target, m.fstype, m.flags, m.data)
		if err != nil && !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

func (b *Bootstrap) settings() (nodeconf.Effective, error) {
	var cl nodeconf.Cmdline
	if data, err := b.Sys.ReadFile(b.CmdlinePath); err != nil {
		b.say("warning: cannot read %s: %v", b.CmdlinePath, err)
	} else {
		cl = nodeconf.ParseCmdline(string(data))
	}
	var cfg *nodeconf.Config
	data, err := b.Sys.ReadFile(b.ConfigPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b.say("warning: no %s (is the wwinit system overlay missing?); using the kernel command line only", b.ConfigPath)
	case err != nil:
		return nodeconf.Effective{}, fmt.Errorf("read %s: %w", b.ConfigPath, err)
	default:
		if cfg, err = nodeconf.Parse(data); err != nil {
			return nodeconf.Effective{}, fmt.Errorf("%s: %w", b.ConfigPath, err)
		}
	}
	return nodeconf.Merge(cfg, cl, ""), nil
}

func (b *Bootstrap) switchRoot(label LabelFunc, size string) error {
	if err := b.mountNewRoot(size); err != nil {
		return err
	}
	b.say("copying the root file system to tmpfs")
	return b.enterNewRoot(labelErr(b.Sys.CopyTree("/", NewRoot, label)))
}

// mountNewRoot mounts the tmpfs the root goes to, with size= when size is
// set (wwtmpfs_size=; else the kernel's default, half the RAM).
func (b *Bootstrap) mountNewRoot(size string) error {
	if err := b.Sys.MkdirAll(NewRoot, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", NewRoot, err)
	}
	opts := "mode=0755"
	if size != "" {
		opts += ",size=" + size
	}
	if err := b.Sys.Mount("tmpfs", NewRoot, "tmpfs", 0, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", NewRoot, err)
	}
	return nil
}

// labelErr passes a copy's *LabelError through as a warning (the copy is
// complete) and turns any other error into a failed copy.
func labelErr(err error) (warn, fail error) {
	var lerr *LabelError
	if err != nil && !errors.As(err, &lerr) {
		return nil, fmt.Errorf("copy root: %w", err)
	}
	return err, nil
}

// enterNewRoot moves the API file systems into the filled new root, frees
// the initramfs and makes the new root "/". A failed fill (fail) unmounts
// it instead; warn (labels not set) is returned at the end.
func (b *Bootstrap) enterNewRoot(warn, fail error) error {
	if fail != nil {
		_ = b.Sys.Unmount(NewRoot, syscall.MNT_DETACH)
		return fail
	}
	for _, m := range apiMounts {
		dst := path.Join(NewRoot, m.target)
		if err := b.Sys.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dst, err)
		}
		if err := b.Sys.Mount(m.target, dst, "", syscall.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s to %s: %w", m.target, dst, err)
		}
	}
	// like switch_root: free the initramfs (rootfs cannot be unmounted or
	// pivot_root'ed), then move the new root over / and chroot into it
	if err := b.Sys.Chdir(NewRoot); err != nil {
		return fmt.Errorf("chdir %s: %w", NewRoot, err)
	}
	if err := b.Sys.RemoveTree("/"); err != nil {
		b.say("warning: freeing the initramfs: %v", err)
	}
	if err := b.Sys.Mount(".", "/", "", syscall.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", NewRoot, err)
	}
	if err := b.Sys.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := b.Sys.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return warn // a copy's labels not set: the caller relabels
}

// SELinuxDecision says whether to load the policy, or why not.
type SELinuxDecision struct {
	Load   bool
	Mode   string // enforcing|permissive
	Type   string // SELINUXTYPE, default targeted
	Reason string // why it is skipped
}

// DecideSELinux applies the rule: /etc/selinux/config says enforcing or
// permissive, AND the kernel command line has selinux=1, AND the image
// has load_policy.
func DecideSELinux(config []byte, configErr error, cmdlineSELinux, hasLoadPolicy bool) SELinuxDecision {
	if configErr != nil {
		return SELinuxDecision{Reason: "no " + SELinuxConfig}
	}
	d := SELinuxDecision{Type: "targeted"}
	for _, line := range strings.Split(string(config), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		v = strings.Trim(strings.TrimSpace(v), `"'`)
		switch strings.TrimSpace(k) {
		case "SELINUX":
			d.Mode = strings.ToLower(v)
		case "SELINUXTYPE":
			if v != "" {
				d.Type = v
			}
		}
	}
	switch {
	case d.Mode != "enforcing" && d.Mode != "permissive":
		d.Reason = fmt.Sprintf("%s has SELINUX=%s", SELinuxConfig, orNone(d.Mode))
	case !cmdlineSELinux:
		d.Reason = "kernel command line has no selinux=1"
	case !hasLoadPolicy:
		d.Reason = "image has no " + LoadPolicy
	default:
		d.Load = true
	}
	return d
}

// FileContextsDir is where a policy type's file_contexts live.
func FileContextsDir(selinuxType string) string {
	return "/etc/selinux/" + selinuxType + "/contexts/files"
}

func (b *Bootstrap) decideSELinux(eff nodeconf.Effective) SELinuxDecision {
	cfg, err := b.Sys.ReadFile(SELinuxConfig)
	d := DecideSELinux(cfg, err, eff.SELinux, b.Sys.Exists(LoadPolicy))
	if !d.Load {
		b.say("SELinux: skipped: %s", d.Reason)
	}
	return d
}

// loadPolicy loads the policy; a failure is fatal when enforcing.
func (b *Bootstrap) loadPolicy(d SELinuxDecision) (bool, error) {
	b.say("SELinux: loading policy (%s, %s)", d.Type, d.Mode)
	if err := b.Sys.Run(LoadPolicy, "-i"); err != nil {
		if d.Mode == "enforcing" {
			return false, fmt.Errorf("SELinux: load_policy -i: %w", err)
		}
		b.say("warning: SELinux: load_policy -i: %v (permissive: continuing)", err)
		return false, nil
	}
	return true, nil
}

// relabel labels the whole root with setfiles (the second pass the
// labelling copy avoids).
func (b *Bootstrap) relabel(d SELinuxDecision) {
	setfiles := ""
	for _, p := range []string{"/usr/sbin/setfiles", "/sbin/setfiles"} {
		if b.Sys.Exists(p) {
			setfiles = p
			break
		}
	}
	fc := FileContextsDir(d.Type) + "/file_contexts"
	if setfiles == "" {
		b.say("warning: SELinux: no setfiles in the image; the tree is not relabelled")
		return
	}
	// -T 0: one labelling thread per CPU (policycoreutils >= 3.4 only, so
	// retried without it).
	start := time.Now()
	err := b.Sys.Run(setfiles, "-T", "0", "-e", "/proc", "-e", "/sys", fc, "/")
	if err != nil {
		err = b.Sys.Run(setfiles, "-e", "/proc", "-e", "/sys", fc, "/")
	}
	if err != nil {
		b.say("warning: SELinux: %s: %v", setfiles, err)
		return
	}
	b.say("SELinux: labelled the root file system in %s", time.Since(start).Round(10*time.Millisecond))
}

// initContext prepares PID 1's SELinux domain for exec'ing init. systemd
// reloads the policy itself and then moves from the kernel's domain into
// init_t with setcon; if the exec had already put it into init_t (the
// policy's kernel_t -> init_exec_t transition), that setcon is refused
// (no init_t -> init_t dyntransition) and systemd logs "Failed to
// transition into init label". So systemd is exec'ed in the kernel's
// domain and makes the move itself, as on a disk boot; any other init gets
// the policy's exec transition.
func (b *Bootstrap) initContext(init string) {
	real, err := b.Sys.EvalSymlinks(init)
	if err != nil || path.Base(real) != "systemd" {
		return
	}
	if err := b.Sys.KeepExecContext(); err != nil {
		b.say("warning: SELinux: keep the exec context for systemd: %v", err)
		return
	}
	b.say("SELinux: %s is systemd: exec in the kernel's domain, systemd moves itself to init_t", init)
}

func (b *Bootstrap) startAgent() {
	if !b.Sys.Exists(b.AgentPath) {
		b.say("warning: agent %s not found; the runtime overlay will not be updated", b.AgentPath)
		return
	}
	pid, err := b.Sys.Start(b.AgentPath, []string{b.AgentPath}, b.env(), b.AgentLog)
	if err != nil {
		b.say("warning: starting agent %s: %v", b.AgentPath, err)
		return
	}
	b.say("agent %s started (pid %d, log %s)", b.AgentPath, pid, b.AgentLog)
}

// rescue reports err and tries the rescue shell, then a reboot.
func (b *Bootstrap) rescue(err error) {
	b.say("ERROR: %v", err)
	if b.Sys.Exists(RescueShell) {
		b.say("starting rescue shell %s", RescueShell)
		err := b.Sys.Exec(RescueShell, []string{RescueShell}, b.env())
		b.say("ERROR: exec %s: %v", RescueShell, err)
	}
	b.say("rebooting in %s", b.RebootDelay)
	b.Sys.Sleep(b.RebootDelay)
	if err := b.Sys.Reboot(); err != nil {
		b.say("ERROR: reboot: %v", err)
	}
}
