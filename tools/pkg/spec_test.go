package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestPackageVersion(t *testing.T) {
	day := time.Date(2026, 12, 7, 17, 4, 5, 0, time.UTC)
	for _, c := range []struct{ describe, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v1.2.3-4-gabcdef0", "1.2.3+4.gabcdef0"},
		{"v1.2.3-4-gabcdef0-dirty", "1.2.3+4.gabcdef0.dirty"},
		{"abcdef0", "0~git20261207170405.abcdef0"},
		{"abcdef0-dirty", "0~git20261207170405.abcdef0.dirty"},
	} {
		got, err := packageVersion(c.describe, day)
		if err != nil || got != c.want {
			t.Errorf("packageVersion(%q) = %q, %v; want %q", c.describe, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "dev", "v1.2", "v1.2.3-rc1", "xyz"} {
		if v, err := packageVersion(bad, day); err == nil {
			t.Errorf("packageVersion(%q) = %q, want an error", bad, v)
		}
	}
}

// TestPackageVersionOrder: dpkg and rpm themselves order the versions by
// age (an upgrade is seen as one).
func TestPackageVersionOrder(t *testing.T) {
	v := func(describe string, at time.Time) string {
		s, err := packageVersion(describe, at)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	d1 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	older := []string{v("fffffff", d1), v("0000000", d1.Add(time.Hour)), v("v0.1.0", d1), v("v0.1.0-1-g0000000", d1),
		v("v0.1.0-12-g0000000", d1), v("v0.2.0", d1)}
	dpkg, dpkgErr := exec.LookPath("dpkg")
	rpm, rpmErr := exec.LookPath("rpm")
	if dpkgErr != nil && rpmErr != nil {
		t.Skip("neither dpkg nor rpm here (make unit installs rpm; dpkg is Debian's)")
	}
	for i := 0; i+1 < len(older); i++ {
		a, b := older[i], older[i+1]
		if dpkgErr == nil {
			if err := exec.Command(dpkg, "--compare-versions", a, "lt", b).Run(); err != nil {
				t.Errorf("dpkg: %s is not older than %s", a, b)
			}
		}
		if rpmErr == nil {
			out, err := exec.Command(rpm, "--eval", `%{lua: print(rpm.vercmp("`+a+`", "`+b+`"))}`).Output()
			if err != nil || strings.TrimSpace(string(out)) != "-1" {
				t.Errorf("rpm: %s is not older than %s (%s, %v)", a, b, out, err)
			}
		}
	}
}
