package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/tools/lab"
)

// TestPackageDeb installs the wwserver and wwclient .debs (apt-get install
// ./FILE) into a fresh
// Debian 12 root and checks what they installed (versions, unit, man
// pages, completions; the unit passes systemd-analyze verify there and
// enables offline); runs the unit's first start on an empty served tree;
// serves the lab tree with the installed wwserver started as its unit
// starts it and boots one BIOS node from it; then removes and purges the
// packages: nothing is left but the served tree. Then the .rpm is installed
// into the same root with rpm (scripts run in the root), checked the same
// way and erased.
func TestPackageDeb(t *testing.T) {
	t.Parallel()
	art := findPackages(t)
	r := newPkgRoot(t, art.rootDir)
	before := r.snapshot()
	start := time.Now()
	srv, cli := r.copyIn(art.serverDeb), r.copyIn(art.clientDeb)
	// As the README says (apt install ./wwserver_*.deb); the root has the
	// dependencies, so apt needs no network and checks them as dpkg would.
	r.mustRun("apt-get", "install", "-y", "-q", "--no-install-recommends", srv, cli)
	if err := os.Remove(r.path(srv)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(r.path(cli)); err != nil {
		t.Fatal(err)
	}
	t.Logf("apt-get install ./wwserver_*.deb ./wwclient_*.deb: %s", time.Since(start).Round(time.Millisecond))
	r.checkInstalled(t, r.mustRun("dpkg-query", "-W", "-f=${Version}", "wwserver"), pkgServer, pkgNodeClient, "/usr/sbin/wwclient")
	r.checkFirstStart(t)

	t.Run("boot", func(t *testing.T) { bootFromPackage(t, r) })
	// /run is a tmpfs on a running system (systemd-analyze wrote there).
	if err := os.RemoveAll(r.path("/run/systemd")); err != nil {
		t.Fatal(err)
	}

	r.mustRun("dpkg", "-r", "wwserver", "wwclient")
	// Allowed besides the served tree: apt's, dpkg's and rpm's own records,
	// caches and logs, and man-db's cache (systemd-analyze verify ran man).
	allowed := []string{pkgTree, "/var/lib/apt", "/var/cache/apt", "/var/cache/debconf", "/var/lib/dpkg", "/var/lib/rpm", "/var/log", "/var/cache/man"}
	removed := leftovers(before, r.snapshot(), allowed...)
	if len(removed) > 0 {
		t.Errorf("dpkg -r left behind: %v", removed)
	}
	r.mustRun("dpkg", "-P", "wwserver", "wwclient")
	after := r.snapshot()
	if extra := leftovers(before, after, allowed...); len(extra) > 0 {
		t.Errorf("dpkg -P left behind: %v", extra)
	}
	for p := range after {
		if strings.HasPrefix(p, "/var/lib/dpkg/info/wwserver.") || strings.HasPrefix(p, "/var/lib/dpkg/info/wwclient.") {
			t.Errorf("dpkg -P left %s", p)
		}
	}
	if _, err := os.Stat(r.path(pkgTree + "/wwserver.toml")); err != nil {
		t.Errorf("the served tree must stay after purge: %v", err)
	}

	if _, err := exec.LookPath("rpm"); err != nil {
		unavailable(t, err)
	}
	r.checkRPM(t, art.serverRPM, after)
}

// checkInstalled checks what the wwserver package (version pkgVersion)
// installed; bins are the binaries of that build.
func (r *pkgRoot) checkInstalled(t *testing.T, pkgVersion string, bins ...string) {
	t.Helper()
	for _, bin := range bins {
		out := r.mustRun(bin, "--version")
		if core := versionCore(t, out); !strings.Contains(pkgVersion, core) {
			t.Errorf("%s --version = %q, package version %q: not the same build", bin, strings.TrimSpace(out), pkgVersion)
		}
	}
	for _, f := range []string{pkgUnit, "/usr/share/man/man8/wwserver.8.gz", "/usr/share/man/man8/wwserver-serve.8.gz",
		"/usr/share/bash-completion/completions/wwserver", "/usr/share/fish/vendor_completions.d/wwserver.fish",
		"/usr/share/doc/wwserver/README.md"} {
		if st, err := os.Stat(r.path(f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not installed (or empty): %v", f, err)
		}
	}
	if out, err := r.run("systemd-analyze", "verify", pkgUnit); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify %s: %v %s", pkgUnit, err, out)
	}
	r.mustRun("systemctl", "enable", "wwserver.service")
	if _, err := os.Lstat(r.path(pkgEnableLink)); err != nil {
		t.Errorf("systemctl enable: %v", err)
	}
}

// checkFirstStart runs the unit's ExecStartPre lines as its first start
// would, on an empty served tree: the first writes the example tree
// (wwserver init, finding the nodes' wwclient the package installed), the
// second (wwserver check) fails on the placeholder image and says so.
func (r *pkgRoot) checkFirstStart(t *testing.T) {
	t.Helper()
	u := r.unit(t)
	if err := os.MkdirAll(r.path(pkgTree), 0o700); err != nil { // StateDirectory=
		t.Fatal(err)
	}
	if len(u.pre) != 2 {
		t.Fatalf("want 2 ExecStartPre lines (init when missing, check), got %q", u.pre)
	}
	out := r.mustRun("/bin/sh", "-c", u.pre[0])
	if _, err := os.Stat(r.path(pkgTree + "/overlays/wwinit/usr/sbin/wwclient")); err != nil {
		t.Fatalf("first start did not write the tree with wwclient: %v\n%s", err, out)
	}
	out, err := r.run("/bin/sh", "-c", u.pre[1])
	if err == nil || !strings.Contains(out, "image") {
		t.Errorf("check on the placeholder image: err %v, want a failure naming the image:\n%s", err, out)
	}
	// The second start leaves the tree alone.
	stamp := r.path(pkgTree + "/wwserver.toml")
	if err := os.WriteFile(stamp, []byte("# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.mustRun("/bin/sh", "-c", u.pre[0])
	if b, _ := os.ReadFile(stamp); string(b) != "# edited\n" {
		t.Errorf("a second start rewrote wwserver.toml")
	}
}

// unitExec are the parts of the installed unit the tests run.
type unitExec struct {
	pre   []string // ExecStartPre= command lines
	start string   // ExecStart=
	caps  []string // CapabilityBoundingSet=, as setpriv names them
	nnp   bool     // NoNewPrivileges=yes
}

func (r *pkgRoot) unit(t *testing.T) unitExec {
	t.Helper()
	data, err := os.ReadFile(r.path(pkgUnit))
	if err != nil {
		t.Fatal(err)
	}
	var u unitExec
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if strings.HasPrefix(k, "Exec") && strings.ContainsAny(v[:1], "-+!@:") {
			t.Fatalf("%s=%s: prefixes are not run by this test", k, v)
		}
		switch k {
		case "ExecStartPre":
			u.pre = append(u.pre, v)
		case "ExecStart":
			u.start = v
		case "CapabilityBoundingSet":
			for _, c := range strings.Fields(v) {
				u.caps = append(u.caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
		case "NoNewPrivileges":
			u.nnp = v == "yes"
		}
	}
	if u.start == "" || len(u.caps) == 0 || !u.nnp {
		t.Fatalf("%s: want ExecStart, CapabilityBoundingSet and NoNewPrivileges=yes: %+v", pkgUnit, u)
	}
	return u
}

// bootFromPackage boots lab node 1 (BIOS) from the lab tree served by the
// installed wwserver: every wwserver command of the lab runs in the root
// (chroot, the host's temporary directory bound at its own path, so the
// lab's paths hold), and "serve" runs the unit's ExecStartPre and ExecStart
// lines on the tree mounted at /var/lib/wwserver, under the unit's
// CapabilityBoundingSet and NoNewPrivileges (setpriv). Not reproduced:
// ProtectSystem, PrivateTmp and the other sandboxing of systemd.
func bootFromPackage(t *testing.T, r *pkgRoot) {
	if os.Getenv("WW_PKG_BOOT") == "0" {
		t.Skip("the QEMU boot from the installed package is left out (WW_PKG_BOOT=0): run by make test-packages")
	}
	u := r.unit(t)
	wrapper := r.writeServeWrapper(t, u)
	n := lab.LabNode(1)
	e := newEnvWith(t, 4*time.Minute, envOptions{
		Tree: lab.TreeOptions{Nodes: []lab.Node{n}},
		Paths: func(p *lab.Paths) {
			p.Wwserver = wrapper
			p.Wwclient = pkgNodeClient  // as the root sees it
			p.IPXEDir = "/usr/lib/ipxe" // the ipxe package in the root
		},
	})
	vm := e.startVM(lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: lab.BIOS})
	e.waitBooted(vm, n.Name)
	e.waitRuntime(n.Name)
	if !strings.Contains(lab.Tail(e.lab.ServerLog(), 100000), `{"time":`) {
		t.Errorf("wwserver did not run with the unit's --log-format json:\n%s", lab.Tail(e.lab.ServerLog(), 20))
	}
	checkServerCaps(t, r.path(pkgServer), u.caps)
}

// unitStartScript holds the unit's start lines in the root (bootFromPackage).
const unitStartScript = "/wwtest-unit-start"

// writeServeWrapper writes the wwserver the lab runs (see bootFromPackage):
// a host script entering a private mount namespace, and the unit's start
// lines as a script in the root.
func (r *pkgRoot) writeServeWrapper(t *testing.T, u unitExec) string {
	t.Helper()
	start := "#!/bin/sh\n# the unit's start lines (integration/package_deb_test.go)\nset -e\n" +
		strings.Join(u.pre, "\n") + "\nexec " + u.start + "\n"
	if err := os.WriteFile(r.path(unitStartScript), []byte(start), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // not the package's: not to be found by the leftover checks
		if err := os.Remove(r.path(unitStartScript)); err != nil {
			t.Error(err)
		}
	})
	tmp, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	caps := "-all,+" + strings.Join(u.caps, ",+")
	inner := filepath.Join(t.TempDir(), "wwserver-in-root")
	script := `#!/bin/sh
# The installed wwserver of the package root, for the lab (integration/package_deb_test.go).
set -e
R=` + lab.ShellQuote([]string{r.dir}) + `
T=` + lab.ShellQuote([]string{tmp}) + `
mkdir -p "$R$T"
mount --bind "$T" "$R$T"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount --rbind /sys "$R/sys"
if [ "$1" = serve ] && [ "$2" = --root ]; then
	mount --bind "$3" "$R` + pkgTree + `"
	exec chroot "$R" setpriv --bounding-set ` + caps + ` --no-new-privs /bin/sh ` + unitStartScript + `
fi
exec chroot "$R" ` + pkgServer + ` "$@"
`
	if err := os.WriteFile(inner, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	outer := inner + "-ns"
	if err := os.WriteFile(outer, []byte("#!/bin/sh\nexec unshare --mount --propagation private "+inner+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return outer
}

// checkRPM checks the .rpm: digests, file list and dependencies (rpm -K,
// -qpl, --requires), then installs it into the root with rpm --root (its
// scripts run there), checks the installed files as for the .deb, erases it
// and finds nothing left but the served tree (before: the root's paths
// before the install).
func (r *pkgRoot) checkRPM(t *testing.T, file string, before map[string]bool) {
	t.Helper()
	rpm := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(rootCtx, "rpm", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("rpm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	rpm("-K", "--nosignature", file)
	list := rpm("-qpl", file)
	for _, f := range []string{pkgServer, pkgNodeClient, pkgUnit, "/usr/share/zsh/site-functions/_wwserver", "/usr/share/man/man8/wwserver-init.8.gz"} {
		if !strings.Contains(list, f+"\n") {
			t.Errorf("rpm -qpl: %s missing:\n%s", f, list)
		}
	}
	if req := rpm("-qp", "--requires", file); !strings.Contains(req, "ipxe-bootimgs-x86") {
		t.Errorf("rpm --requires: ipxe-bootimgs-x86 missing:\n%s", req)
	}
	start := time.Now()
	// --nodeps: the root is Debian; Rocky's package names are not there.
	// --dbpath: Debian's rpm keeps its database in ~/.rpmdb by default.
	db := []string{"--root", r.dir, "--dbpath", "/var/lib/rpm"}
	rpm(append(db, "-i", "--nodeps", file)...)
	t.Logf("rpm -i: %s", time.Since(start).Round(time.Millisecond))
	r.checkInstalled(t, rpm(append(db, "-q", "--qf", "%{VERSION}", "wwserver")...), pkgServer, pkgNodeClient)
	if err := os.RemoveAll(r.path("/run/systemd")); err != nil {
		t.Fatal(err)
	}
	rpm(append(db, "-e", "--nodeps", "wwserver")...)
	if extra := leftovers(before, r.snapshot(), pkgTree, "/var/lib/rpm", "/var/log", "/var/cache/man"); len(extra) > 0 {
		t.Errorf("rpm -e left behind: %v", extra)
	}
}

// capNumbers are the capabilities the unit may name (setpriv's names).
var capNumbers = map[string]uint{"net_bind_service": 10, "net_raw": 13, "dac_override": 1, "dac_read_search": 2, "net_admin": 12}

// checkServerCaps finds the running wwserver serve of exe (/proc/PID/exe)
// and checks its bounding and effective capability sets are exactly caps
// and no_new_privs is set.
func checkServerCaps(t *testing.T, exe string, caps []string) {
	t.Helper()
	var want uint64
	for _, c := range caps {
		n, ok := capNumbers[c]
		if !ok {
			t.Fatalf("capability %q: add it to capNumbers", c)
		}
		want |= 1 << n
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	found := 0
	for _, p := range procs {
		if target, err := os.Readlink(p); err != nil || target != exe {
			continue
		}
		status, err := os.ReadFile(filepath.Join(filepath.Dir(p), "status"))
		if err != nil {
			continue
		}
		found++
		for _, field := range []string{"CapBnd", "CapEff"} {
			if got := statusField(string(status), field); got != want {
				t.Errorf("%s %s = %#x, want %#x (%v)", p, field, got, want, caps)
			}
		}
		if !strings.Contains(string(status), "NoNewPrivs:\t1") {
			t.Errorf("%s: no_new_privs not set", p)
		}
	}
	if found == 0 {
		t.Errorf("no running process of %s found", exe)
	}
}

// statusField parses a hexadecimal field of /proc/PID/status.
func statusField(status, name string) uint64 {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, name+":\t"); ok {
			var n uint64
			_, _ = fmt.Sscanf(v, "%x", &n)
			return n
		}
	}
	return 0
}
