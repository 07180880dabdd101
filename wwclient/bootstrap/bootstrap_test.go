package bootstrap

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeSys records the actions of a boot.
type fakeSys struct {
	calls   []string
	files   map[string]string
	exists  map[string]bool
	mounted map[string]bool
	fail    map[string]error // action (as recorded) -> error
	panicOn string
	// labelErr is what a labelling CopyTree returns after copying
	labelErr error
	links    map[string]string // EvalSymlinks results
}

func newFake() *fakeSys {
	return &fakeSys{
		files: map[string]string{
			"/proc/cmdline": "console=ttyS0 wwid=52:54:00:00:00:01 wwserver=10.0.2.1:9873 quiet\n",
			"/etc/wwclient/wwclient.toml": `node = "n001"
server = "10.0.2.1:9873"
update_interval = 60
secure = true
asset_key = ""
root = "tmpfs"
[[network]]
name = "eth0"
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.0.2.11"
netmask = "255.255.255.0"
gateway = ""
primary = true
`,
		},
		exists:  map[string]bool{"/sbin/init": true, "/bin/sh": true, "/usr/sbin/wwclient": true},
		mounted: map[string]bool{},
		fail:    map[string]error{},
	}
}

func (f *fakeSys) act(s string) error {
	if f.panicOn != "" && s == f.panicOn {
		panic("boom in " + s)
	}
	f.calls = append(f.calls, s)
	return f.fail[s]
}

func (f *fakeSys) MountPoint(p string) (bool, error) { return f.mounted[p], nil }
func (f *fakeSys) Mount(source, target, fstype string, flags uintptr, data string) error {
	if flags&syscall.MS_MOVE != 0 {
		return f.act("move " + source + " " + target)
	}
	return f.act(fmt.Sprintf("mount %s %s %s %s", fstype, target, flagNames(flags), data))
}

func flagNames(fl uintptr) string {
	var s []string
	for _, x := range []struct {
		f uintptr
		n string
	}{{syscall.MS_NOSUID, "nosuid"}, {syscall.MS_NODEV, "nodev"}, {syscall.MS_NOEXEC, "noexec"}} {
		if fl&x.f != 0 {
			s = append(s, x.n)
		}
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

func (f *fakeSys) Unmount(target string, flags int) error    { return f.act("umount " + target) }
func (f *fakeSys) MkdirAll(p string, perm fs.FileMode) error { return nil }
func (f *fakeSys) ReadFile(p string) ([]byte, error) {
	s, ok := f.files[p]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return []byte(s), nil
}
func (f *fakeSys) Exists(p string) bool          { return f.exists[p] }
func (f *fakeSys) Sethostname(name string) error { return f.act("hostname " + name) }
func (f *fakeSys) Chdir(p string) error          { return f.act("chdir " + p) }
func (f *fakeSys) Chroot(p string) error         { return f.act("chroot " + p) }
func (f *fakeSys) CopyTree(src, dst string, label LabelFunc) error {
	if label != nil {
		if err := f.act("copy labelled " + src + " " + dst); err != nil {
			return err
		}
		return f.labelErr
	}
	return f.act("copy " + src + " " + dst)
}
func (f *fakeSys) EvalSymlinks(p string) (string, error) {
	if t, ok := f.links[p]; ok {
		return t, nil
	}
	return p, nil
}
func (f *fakeSys) KeepExecContext() error { return f.act("keep exec context") }
func (f *fakeSys) LabelTree(dir string, label LabelFunc) error {
	return f.act("label " + dir)
}
func (f *fakeSys) FileContexts(typ string) (LabelFunc, error) {
	if err := f.act("file_contexts " + typ); err != nil {
		return nil, err
	}
	return func(string, uint32) (string, bool) { return "", false }, nil
}
func (f *fakeSys) RemoveTree(dir string) error { return f.act("remove " + dir) }
func (f *fakeSys) Run(p string, args ...string) error {
	return f.act("run " + p + " " + strings.Join(args, " "))
}
func (f *fakeSys) Start(p string, args, env []string, logPath string) (int, error) {
	if !hasPath(env) {
		return 0, errors.New("no PATH in env")
	}
	return 4242, f.act("start " + strings.Join(args, " ") + " log=" + logPath)
}
func (f *fakeSys) Exec(p string, argv, env []string) error {
	err := f.act("exec " + p + " [" + strings.Join(argv, " ") + "]")
	if err == nil {
		err = errors.New("fake exec returned") // a real exec does not
	}
	return err
}
func (f *fakeSys) Reboot() error         { return f.act("reboot") }
func (f *fakeSys) Sleep(d time.Duration) { f.act("sleep " + d.String()) }
func (f *fakeSys) SetupConsole() error   { return f.act("console") }

func hasPath(env []string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return true
		}
	}
	return false
}

func boot(t *testing.T, f *fakeSys, args ...string) (calls []string, console string) {
	t.Helper()
	var out bytes.Buffer
	if len(args) == 0 {
		args = []string{"/init"}
	}
	b := &Bootstrap{Sys: f, Console: &out, Version: "test", Args: args, Env: []string{"HOME=/", "TERM=linux"}}
	b.Run()
	return f.calls, out.String()
}

var apiMountCalls = []string{
	"mount proc /proc nosuid,nodev,noexec ",
	"mount sysfs /sys nosuid,nodev,noexec ",
	"mount devtmpfs /dev nosuid mode=0755",
	"mount tmpfs /run nosuid,nodev mode=0755",
	"console",
}

func expectCalls(t *testing.T, got []string, want ...[]string) {
	t.Helper()
	var w []string
	for _, part := range want {
		w = append(w, part...)
	}
	if strings.Join(got, "\n") != strings.Join(w, "\n") {
		t.Fatalf("calls:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(w, "\n  "))
	}
}

func lines(console, prefix string) []string {
	var out []string
	for _, l := range strings.Split(console, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

func TestBootTmpfsSequence(t *testing.T) {
	f := newFake()
	calls, console := boot(t, f, "/init", "single")
	expectCalls(t, calls, apiMountCalls, []string{
		"mount tmpfs /newroot - mode=0755",
		"copy / /newroot",
		"move /proc /newroot/proc",
		"move /sys /newroot/sys",
		"move /dev /newroot/dev",
		"move /run /newroot/run",
		"chdir /newroot",
		"remove /",
		"move . /",
		"chroot .",
		"chdir /",
		"hostname n001",
		"start /usr/sbin/wwclient log=/dev/console",
		"exec /sbin/init [/sbin/init single]",
		// the fake exec returns: that is a failure, so the rescue path follows
		"exec /bin/sh [/bin/sh]",
		"sleep 30s",
		"reboot",
	})
	for _, want := range []string{
		"wwinit: starting (wwclient test)",
		"wwinit: node n001, hwaddr 52:54:00:00:00:01, server 10.0.2.1:9873, root tmpfs",
		"wwinit: root: switched to tmpfs",
		"wwinit: exec /sbin/init",
	} {
		if !strings.Contains(console, want+"\n") {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
	if sel := lines(console, "wwinit: SELinux"); len(sel) != 1 || sel[0] != "wwinit: SELinux: skipped: no /etc/selinux/config" {
		t.Errorf("SELinux lines: %q", sel)
	}
	for _, l := range strings.Split(strings.TrimSpace(console), "\n") {
		if !strings.HasPrefix(l, "wwinit: ") {
			t.Errorf("console line without prefix: %q", l)
		}
	}
}

func TestBootInitramfsAndCmdlineOverrides(t *testing.T) {
	f := newFake()
	f.files["/proc/cmdline"] = "wwid=52:54:00:00:00:01 wwserver=10.9.9.9:1 wwroot=initramfs init=/bin/myinit"
	f.exists["/bin/myinit"] = true
	f.mounted["/proc"] = true // already mounted: left alone
	f.fail["mount sysfs /sys nosuid,nodev,noexec "] = syscall.EBUSY
	calls, console := boot(t, f)
	expectCalls(t, calls[:6], []string{
		"mount sysfs /sys nosuid,nodev,noexec ",
		"mount devtmpfs /dev nosuid mode=0755",
		"mount tmpfs /run nosuid,nodev mode=0755",
		"console",
		"hostname n001",
		"start /usr/sbin/wwclient log=/dev/console",
	})
	if calls[6] != "exec /bin/myinit [/bin/myinit]" {
		t.Fatalf("exec: %q", calls[6])
	}
	if !strings.Contains(console, "server 10.9.9.9:1, root initramfs") || !strings.Contains(console, "root: staying in the initramfs") {
		t.Fatalf("console:\n%s", console)
	}
}

func TestBootWithoutConfigUsesCmdline(t *testing.T) {
	f := newFake()
	delete(f.files, "/etc/wwclient/wwclient.toml")
	calls, console := boot(t, f)
	if !strings.Contains(console, "warning: no /etc/wwclient/wwclient.toml") {
		t.Fatalf("console:\n%s", console)
	}
	if !strings.Contains(console, "node (unnamed), hwaddr 52:54:00:00:00:01, server 10.0.2.1:9873, root tmpfs") {
		t.Fatalf("console:\n%s", console)
	}
	for _, c := range calls {
		if strings.HasPrefix(c, "hostname") {
			t.Fatal("hostname set without a node name")
		}
	}
	if !contains(calls, "exec /sbin/init [/sbin/init]") {
		t.Fatalf("calls %v", calls)
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func TestBootFailures(t *testing.T) {
	type tc struct {
		name      string
		setup     func(f *fakeSys)
		errLine   string   // the ERROR line expected first
		wantCalls []string // must appear, in this order, at the end
		absent    []string // must not appear
	}
	tail := []string{"exec /bin/sh [/bin/sh]", "sleep 30s", "reboot"}
	cases := []tc{
		{
			name:      "exec init fails",
			setup:     func(f *fakeSys) { f.fail["exec /sbin/init [/sbin/init]"] = syscall.ENOEXEC },
			errLine:   "wwinit: ERROR: exec /sbin/init: exec format error",
			wantCalls: append([]string{"exec /sbin/init [/sbin/init]"}, tail...),
		},
		{
			name:      "init missing",
			setup:     func(f *fakeSys) { delete(f.exists, "/sbin/init") },
			errLine:   "wwinit: ERROR: init /sbin/init not found in the image",
			wantCalls: append([]string{"start /usr/sbin/wwclient log=/dev/console"}, tail...),
		},
		{
			name: "no shell: reboot after the delay",
			setup: func(f *fakeSys) {
				delete(f.exists, "/sbin/init")
				delete(f.exists, "/bin/sh")
			},
			errLine:   "wwinit: ERROR: init /sbin/init not found in the image",
			wantCalls: []string{"start /usr/sbin/wwclient log=/dev/console", "sleep 30s", "reboot"},
			absent:    []string{"exec /bin/sh [/bin/sh]"},
		},
		{
			name: "copy fails: tmpfs unmounted, nothing moved",
			setup: func(f *fakeSys) {
				f.fail["copy / /newroot"] = errors.New("no space left on device")
			},
			errLine:   "wwinit: ERROR: switch to tmpfs root: copy root: no space left on device",
			wantCalls: append([]string{"copy / /newroot", "umount /newroot"}, tail...),
			absent:    []string{"move /proc /newroot/proc", "remove /", "start /usr/sbin/wwclient log=/dev/console"},
		},
		{
			name:      "invalid config",
			setup:     func(f *fakeSys) { f.files["/etc/wwclient/wwclient.toml"] = "root = \"nfs\"\n" },
			errLine:   `wwinit: ERROR: /etc/wwclient/wwclient.toml: root: must be "tmpfs" or "initramfs", got "nfs"`,
			wantCalls: append([]string{"console"}, tail...),
		},
		{
			name:      "mount fails",
			setup:     func(f *fakeSys) { f.fail["mount proc /proc nosuid,nodev,noexec "] = syscall.EPERM },
			errLine:   "wwinit: ERROR: mount proc on /proc: operation not permitted",
			wantCalls: append([]string{"mount proc /proc nosuid,nodev,noexec "}, tail...),
		},
		{
			name:      "move to / fails",
			setup:     func(f *fakeSys) { f.fail["move . /"] = syscall.EINVAL },
			errLine:   "wwinit: ERROR: switch to tmpfs root: move /newroot to /: invalid argument",
			wantCalls: append([]string{"remove /", "move . /"}, tail...),
		},
		{
			name:      "hostname fails",
			setup:     func(f *fakeSys) { f.fail["hostname n001"] = syscall.EPERM },
			errLine:   "wwinit: ERROR: set hostname n001: operation not permitted",
			wantCalls: append([]string{"hostname n001"}, tail...),
		},
		{
			name:      "panic is caught",
			setup:     func(f *fakeSys) { f.panicOn = "chroot ." },
			errLine:   "wwinit: ERROR: panic: boom in chroot .",
			wantCalls: append([]string{"move . /"}, tail...),
		},
		{
			name: "shell exec fails too: reboot",
			setup: func(f *fakeSys) {
				f.fail["exec /sbin/init [/sbin/init]"] = syscall.ENOENT
				f.fail["exec /bin/sh [/bin/sh]"] = syscall.ENOENT
			},
			errLine:   "wwinit: ERROR: exec /sbin/init: no such file or directory",
			wantCalls: tail,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFake()
			c.setup(f)
			calls, console := boot(t, f)
			errs := lines(console, "wwinit: ERROR:")
			if len(errs) == 0 || errs[0] != c.errLine {
				t.Fatalf("ERROR lines %q, want first %q\nconsole:\n%s", errs, c.errLine, console)
			}
			if len(calls) < len(c.wantCalls) {
				t.Fatalf("calls %q", calls)
			}
			expectCalls(t, calls[len(calls)-len(c.wantCalls):], c.wantCalls)
			for _, a := range c.absent {
				if contains(calls, a) {
					t.Errorf("unexpected call %q in %q", a, calls)
				}
			}
			if !strings.Contains(console, "wwinit: rebooting in 30s\n") {
				t.Errorf("no reboot notice:\n%s", console)
			}
		})
	}
}

func TestBootAgentProblemsAreWarnings(t *testing.T) {
	f := newFake()
	delete(f.exists, "/usr/sbin/wwclient")
	calls, console := boot(t, f)
	if !strings.Contains(console, "wwinit: warning: agent /usr/sbin/wwclient not found") {
		t.Fatalf("console:\n%s", console)
	}
	if !contains(calls, "exec /sbin/init [/sbin/init]") {
		t.Fatal("boot did not go on to init")
	}
	f = newFake()
	f.fail["start /usr/sbin/wwclient log=/dev/console"] = errors.New("ENOMEM")
	calls, console = boot(t, f)
	if !strings.Contains(console, "wwinit: warning: starting agent /usr/sbin/wwclient: ENOMEM") || !contains(calls, "exec /sbin/init [/sbin/init]") {
		t.Fatalf("console:\n%s", console)
	}
}

func TestBootSELinux(t *testing.T) {
	selinuxOn := func(mode string) *fakeSys {
		f := newFake()
		f.files["/proc/cmdline"] += " selinux=1"
		f.files["/etc/selinux/config"] = "# comment\nSELINUX=" + mode + "\nSELINUXTYPE=mls\n"
		f.exists[LoadPolicy] = true
		f.exists["/usr/sbin/setfiles"] = true
		return f
	}
	f := selinuxOn("enforcing")
	calls, console := boot(t, f)
	// tmpfs root: policy first, then the copy labels as it goes; no setfiles
	i := indexOf(calls, "run /usr/sbin/load_policy -i")
	if i < 0 || calls[i+1] != "file_contexts mls" || indexOf(calls, "copy labelled / /newroot") < i ||
		indexOf(calls, "label /dev") < indexOf(calls, "chroot .") || indexOf(calls, "label /run") < 0 {
		t.Fatalf("calls %q", calls)
	}
	if i > indexOf(calls, "start /usr/sbin/wwclient log=/dev/console") || contains(calls, setfilesCall) {
		t.Fatalf("calls %q", calls)
	}
	if sel := lines(console, "wwinit: root: switched"); len(sel) != 1 || !strings.HasPrefix(sel[0], "wwinit: root: switched to tmpfs, labelled as copied, in ") {
		t.Fatalf("%q", sel)
	}
	// PID 1 keeps the kernel's domain for systemd only, right before exec
	if contains(calls, "keep exec context") {
		t.Fatalf("exec context kept for a non-systemd init: %q", calls)
	}
	f = selinuxOn("enforcing")
	f.links = map[string]string{"/sbin/init": "/usr/lib/systemd/systemd"}
	calls, _ = boot(t, f)
	if i := indexOf(calls, "keep exec context"); i < 0 || calls[i+1] != "exec /sbin/init [/sbin/init]" {
		t.Fatalf("systemd: %q", calls)
	}
	// labels that could not be set: setfiles after the switch
	f = selinuxOn("enforcing")
	f.labelErr = &LabelError{Labelled: 10, Failed: 1, First: errors.New("EINVAL")}
	calls, console = boot(t, f)
	if i := indexOf(calls, setfilesCall); i < indexOf(calls, "chroot .") || i > indexOf(calls, "start /usr/sbin/wwclient log=/dev/console") {
		t.Fatalf("calls %q", calls)
	}
	if w := lines(console, "wwinit: warning: SELinux"); len(w) != 1 || !strings.Contains(w[0], "1 of 10 labels not set") {
		t.Fatalf("%q", w)
	}
	// staying in the initramfs: policy after the hostname, then setfiles
	f = selinuxOn("enforcing")
	f.files["/etc/wwclient/wwclient.toml"] = strings.Replace(f.files["/etc/wwclient/wwclient.toml"], `root = "tmpfs"`, `root = "initramfs"`, 1)
	calls, console = boot(t, f)
	i = indexOf(calls, "run /usr/sbin/load_policy -i")
	if i < 0 || calls[i+1] != setfilesCall || contains(calls, "copy / /newroot") {
		t.Fatalf("initramfs root: calls %q\n%s", calls, console)
	}
	if sel := lines(console, "wwinit: SELinux"); len(sel) != 2 || sel[0] != "wwinit: SELinux: loading policy (mls, enforcing)" ||
		!strings.HasPrefix(sel[1], "wwinit: SELinux: labelled the root file system in ") {
		t.Fatalf("%q", sel)
	}
	// enforcing + load_policy failure is fatal
	f = selinuxOn("enforcing")
	f.fail["run /usr/sbin/load_policy -i"] = errors.New("exit status 2")
	_, console = boot(t, f)
	if errs := lines(console, "wwinit: ERROR:"); len(errs) == 0 || errs[0] != "wwinit: ERROR: SELinux: load_policy -i: exit status 2" {
		t.Fatalf("%q", errs)
	}
	// permissive + failure goes on
	f = selinuxOn("permissive")
	f.fail["run /usr/sbin/load_policy -i"] = errors.New("exit status 2")
	calls, console = boot(t, f)
	if !contains(calls, "exec /sbin/init [/sbin/init]") || contains(calls, setfilesCall) || !contains(calls, "copy / /newroot") {
		t.Fatalf("calls %q\n%s", calls, console)
	}
	// disabled: skipped with one line
	f = selinuxOn("disabled")
	calls, console = boot(t, f)
	if sel := lines(console, "wwinit: SELinux"); len(sel) != 1 || sel[0] != "wwinit: SELinux: skipped: /etc/selinux/config has SELINUX=disabled" {
		t.Fatalf("%q", sel)
	}
	if indexOf(calls, "run /usr/sbin/load_policy -i") >= 0 {
		t.Fatal("policy loaded although disabled")
	}
}

const setfilesCall = "run /usr/sbin/setfiles -T 0 -e /proc -e /sys /etc/selinux/mls/contexts/files/file_contexts /"

func indexOf(s []string, x string) int {
	for i, v := range s {
		if v == x {
			return i
		}
	}
	return -1
}

func TestDecideSELinux(t *testing.T) {
	cases := []struct {
		cfg     string
		cfgErr  error
		cmdline bool
		lp      bool
		load    bool
		reason  string
	}{
		{"SELINUX=enforcing", nil, true, true, true, ""},
		{"SELINUX=permissive\nSELINUXTYPE=targeted", nil, true, true, true, ""},
		{`SELINUX="Enforcing"`, nil, true, true, true, ""},
		{"", fs.ErrNotExist, true, true, false, "no /etc/selinux/config"},
		{"SELINUX=disabled", nil, true, true, false, "/etc/selinux/config has SELINUX=disabled"},
		{"# SELINUX=enforcing", nil, true, true, false, "/etc/selinux/config has SELINUX=(none)"},
		{"SELINUX=enforcing", nil, false, true, false, "kernel command line has no selinux=1"},
		{"SELINUX=enforcing", nil, true, false, false, "image has no /usr/sbin/load_policy"},
	}
	for _, c := range cases {
		d := DecideSELinux([]byte(c.cfg), c.cfgErr, c.cmdline, c.lp)
		if d.Load != c.load || d.Reason != c.reason {
			t.Errorf("%q cmdline=%v lp=%v: got %+v", c.cfg, c.cmdline, c.lp, d)
		}
	}
	if d := DecideSELinux([]byte("SELINUX=enforcing"), nil, true, true); d.Type != "targeted" || d.Mode != "enforcing" {
		t.Errorf("defaults: %+v", d)
	}
}
