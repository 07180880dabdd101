package netnstest

import (
	"os"
	"strings"
	"testing"
)

// Require's skip message tells which packages make deps installs: every
// one must be in the Makefile's APT_PACKAGES, or the hint is wrong and
// make test skips (or, under CI, fails) for want of a tool.
func TestDebianPackagesInMakefile(t *testing.T) {
	data, err := os.ReadFile("../../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "APT_PACKAGES :="); ok {
			listed = strings.Fields(v)
		}
	}
	if len(listed) == 0 {
		t.Fatal("no APT_PACKAGES line in the Makefile")
	}
	have := map[string]bool{}
	for _, p := range listed {
		have[p] = true
	}
	for tool, pkg := range debianPackages {
		if !have[pkg] {
			t.Errorf("%s (for %s) is not in the Makefile's APT_PACKAGES %v", pkg, tool, listed)
		}
	}
}
