package integration

import (
	"debug/elf"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageArches: the wwclient packages hold a static binary of their
// architecture (ELF machine, no interpreter) and say so in their metadata
// (deb Architecture, rpm ARCH); the wwserver package's binaries are static
// amd64, and its wwclient for arm64 nodes' overlays static arm64.
func TestPackageArches(t *testing.T) {
	t.Parallel()
	dir := envOr("WW_PACKAGES", "../build/packages")
	for _, c := range []struct {
		deb, rpm, debArch, rpmArch string
		machine                    elf.Machine
	}{
		{"wwclient_*_amd64.deb", "wwclient-*.x86_64.rpm", "amd64", "x86_64", elf.EM_X86_64},
		{"wwclient_*_arm64.deb", "wwclient-*.aarch64.rpm", "arm64", "aarch64", elf.EM_AARCH64},
	} {
		debs, _ := filepath.Glob(filepath.Join(dir, c.deb))
		rpms, _ := filepath.Glob(filepath.Join(dir, c.rpm))
		if len(debs) != 1 || len(rpms) != 1 {
			unavailable(t, fmt.Errorf("want one %s and one %s in %s (make packages)", c.deb, c.rpm, dir))
		}
		if got := output(t, "dpkg-deb", "-f", debs[0], "Architecture"); got != c.debArch {
			t.Errorf("%s: Architecture %q, want %q", debs[0], got, c.debArch)
		}
		root := t.TempDir()
		output(t, "dpkg-deb", "-x", debs[0], root)
		checkStaticELF(t, filepath.Join(root, "usr/sbin/wwclient"), c.machine)
		if _, err := exec.LookPath("rpm"); err != nil {
			unavailable(t, err)
		}
		if got := output(t, "rpm", "-qp", "--qf", "%{ARCH}", rpms[0]); got != c.rpmArch {
			t.Errorf("%s: ARCH %q, want %q", rpms[0], got, c.rpmArch)
		}
		if list := output(t, "rpm", "-qpl", rpms[0]); !strings.Contains(list, "/usr/sbin/wwclient") {
			t.Errorf("%s lacks /usr/sbin/wwclient:\n%s", rpms[0], list)
		}
	}
	// The server package's binaries: static amd64 too (CGO_ENABLED=0).
	srv, _ := filepath.Glob(filepath.Join(dir, "wwserver_*_amd64.deb"))
	if len(srv) != 1 {
		unavailable(t, fmt.Errorf("want one wwserver_*_amd64.deb in %s (make packages)", dir))
	}
	root := t.TempDir()
	output(t, "dpkg-deb", "-x", srv[0], root)
	checkStaticELF(t, filepath.Join(root, pkgServer), elf.EM_X86_64)
	checkStaticELF(t, filepath.Join(root, pkgNodeClient), elf.EM_X86_64)
	checkStaticELF(t, filepath.Join(root, "/usr/lib/wwserver/arm64/wwclient"), elf.EM_AARCH64)
}

func checkStaticELF(t *testing.T, path string, want elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != want {
		t.Errorf("%s: ELF machine %v, want %v", path, f.Machine, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked (PT_INTERP)", path)
		}
	}
}

// output runs a host command and returns its trimmed stdout.
func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(rootCtx, name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}
