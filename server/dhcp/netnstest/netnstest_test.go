package netnstest

import (
	"os"
	"strings"
	"testing"
)

// Require's skip message tells which packages make deps-test installs:
// every one must be in the Makefile's TEST_PACKAGES, or the hint is wrong
// and make test skips (or, under CI, fails) for want of a tool.
func TestDebianPackagesInMakefile(t *testing.T) {
	data, err := os.ReadFile("../../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	lists := map[string][]string{} // NAME_PACKAGES := ... lines
	for _, line := range strings.Split(string(data), "\n") {
		if name, v, ok := strings.Cut(line, "_PACKAGES :="); ok && !strings.ContainsAny(name, " \t#") {
			lists[name] = strings.Fields(v)
		}
	}
	var expand func(name string, depth int) []string
	expand = func(name string, depth int) []string {
		var out []string
		for _, w := range lists[name] {
			if ref, ok := strings.CutPrefix(w, "$("); ok && depth < 5 {
				out = append(out, expand(strings.TrimSuffix(strings.TrimSuffix(ref, ")"), "_PACKAGES"), depth+1)...)
				continue
			}
			out = append(out, w)
		}
		return out
	}
	listed := expand("TEST", 0)
	if len(listed) == 0 {
		t.Fatal("no TEST_PACKAGES line in the Makefile")
	}
	have := map[string]bool{}
	for _, p := range listed {
		have[p] = true
	}
	for tool, pkg := range debianPackages {
		if !have[pkg] {
			t.Errorf("%s (for %s) is not in the Makefile's TEST_PACKAGES %v", pkg, tool, listed)
		}
	}
}
