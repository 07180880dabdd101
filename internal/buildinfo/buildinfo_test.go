package buildinfo

import (
	"strings"
	"testing"
)

func TestVersionPrefersLinked(t *testing.T) {
	if got := Version("v1.2.3-4-gabc"); got != "v1.2.3-4-gabc" {
		t.Fatalf("Version(linked) = %q", got)
	}
	// A test binary has no module version: dev or dev-REVISION.
	if got := Version(""); !strings.HasPrefix(got, "dev") {
		t.Fatalf("Version(\"\") = %q, want dev…", got)
	}
}
