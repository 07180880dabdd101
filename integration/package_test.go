package integration

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// The package tests install what make packages built (WW_PACKAGES, default
// ../build/packages) into a fresh Debian 12 root (an overlay on WW_PKG_ROOT,
// which tools/pkg/testroot.sh caches under /var/cache/ww) and use only what the
// packages installed there, through chroot.

// Installed paths the tests rely on (tools/pkg/spec.go).
const (
	pkgUnit       = "/usr/lib/systemd/system/wwserver.service"
	pkgServer     = "/usr/sbin/wwserver"
	pkgNodeClient = "/usr/lib/wwserver/wwclient"
	pkgTree       = "/var/lib/wwserver"
	pkgEnableLink = "/etc/systemd/system/multi-user.target.wants/wwserver.service"
)

// pkgArtifacts are the package files and the cached Debian 12 root.
type pkgArtifacts struct {
	serverDeb, clientDeb, serverRPM, rootDir string
}

func findPackages(t *testing.T) pkgArtifacts {
	t.Helper()
	dir := envOr("WW_PACKAGES", "../build/packages")
	one := func(pattern string) string {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		if len(m) != 1 {
			unavailable(t, fmt.Errorf("want one %s in %s (make packages), found %d", pattern, dir, len(m)))
		}
		return m[0]
	}
	a := pkgArtifacts{
		serverDeb: one("wwserver_*_amd64.deb"),
		clientDeb: one("wwclient_*_amd64.deb"),
		serverRPM: one("wwserver-*.x86_64.rpm"),
		rootDir:   envOr("WW_PKG_ROOT", "/var/cache/ww/pkgtest/debian12-root"),
	}
	if _, err := os.Stat(filepath.Join(a.rootDir, "usr")); err != nil {
		unavailable(t, fmt.Errorf("Debian 12 test root: %w (tools/pkg/testroot.sh, run by make integration)", err))
	}
	if os.Geteuid() != 0 {
		unavailable(t, fmt.Errorf("the package tests chroot: root needed"))
	}
	return a
}

// pkgRoot is an unpacked Debian 12 root.
type pkgRoot struct {
	t   *testing.T
	dir string
}

// newPkgRoot mounts an overlay with the cached root (never written) as
// its lower layer: a fresh root in no time, unmounted and removed when the
// test ends.
func newPkgRoot(t *testing.T, lower string) *pkgRoot {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "root")
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, filepath.Join(base, "upper"), filepath.Join(base, "work"))
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", opts, dir).CombinedOutput(); err != nil {
		unavailable(t, fmt.Errorf("overlay mount of the Debian 12 root: %v: %s", err, out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return &pkgRoot{t: t, dir: dir}
}

// run runs argv in the root (chroot, with /proc mounted in a private
// mount namespace, gone when it ends) and returns its combined output.
func (r *pkgRoot) run(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(rootCtx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "/bin/sh", "-c",
		`mount -t proc proc "$0/proc" && exec chroot "$0" "$@"`, r.dir}, argv...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive", "HOME=/root"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("chroot %s: %w\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out), nil
}

func (r *pkgRoot) mustRun(argv ...string) string {
	r.t.Helper()
	out, err := r.run(argv...)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// path is p inside the root, on the host.
func (r *pkgRoot) path(p string) string { return filepath.Join(r.dir, p) }

// copyIn copies host file src to /tmp in the root and returns its path there.
func (r *pkgRoot) copyIn(src string) string {
	r.t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		r.t.Fatal(err)
	}
	dst := "/tmp/" + filepath.Base(src)
	if err := os.WriteFile(r.path(dst), data, 0o644); err != nil {
		r.t.Fatal(err)
	}
	return dst
}

// snapshot is every path in the root (files, directories, links).
func (r *pkgRoot) snapshot() map[string]bool {
	r.t.Helper()
	paths := map[string]bool{}
	err := filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(r.dir, p)
		if rel != "." {
			paths["/"+rel] = true
		}
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return paths
}

// leftovers are the paths of after that are not in before and not under
// one of the allowed prefixes.
func leftovers(before, after map[string]bool, allowed ...string) []string {
	var extra []string
next:
	for p := range after {
		if before[p] {
			continue
		}
		for _, a := range allowed {
			if p == a || strings.HasPrefix(p, a+"/") {
				continue next
			}
		}
		extra = append(extra, p)
	}
	sort.Strings(extra)
	return extra
}

// versionCore is what a --version and the package version share: the tag
// (without v) or the commit hash of `git describe`.
func versionCore(t *testing.T, versionOut string) string {
	t.Helper()
	f := strings.Fields(versionOut)
	if len(f) == 0 {
		t.Fatalf("empty --version output")
	}
	v := strings.TrimPrefix(f[len(f)-1], "v")
	core, _, _ := strings.Cut(v, "-")
	if core == "" || strings.HasPrefix(core, "dev") {
		t.Fatalf("--version %q: no version linked (make packages sets it from git)", versionOut)
	}
	return core
}
