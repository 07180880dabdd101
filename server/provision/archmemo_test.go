package provision

import (
	"testing"
	"time"

	"github.com/wwcluster/ww/server/config"
)

// TestArchMemo: within its interval the architecture is looked up once per
// (snapshot, image, kernel); a new snapshot, another image or kernel, or a
// zero interval looks again.
func TestArchMemo(t *testing.T) {
	calls := 0
	find := func(arch string) func() string {
		return func() string { calls++; return arch }
	}
	s1, s2 := &config.Snapshot{Gen: 1}, &config.Snapshot{Gen: 2}
	a := &config.Node{Name: "a", Image: "x86"}
	b := &config.Node{Name: "b", Image: "x86"}
	arm := &config.Node{Name: "c", Image: "arm"}
	m := &archMemo{every: time.Hour}
	for _, step := range []struct {
		snap  *config.Snapshot
		n     *config.Node
		found string
		want  string
		calls int
	}{
		{s1, a, "x86_64", "x86_64", 1},
		{s1, a, "arm64", "x86_64", 1}, // remembered
		{s1, b, "arm64", "x86_64", 1}, // same image and kernel
		{s1, arm, "arm64", "arm64", 2},
		{s2, a, "arm64", "arm64", 3}, // new snapshot
		{s2, a, "x86_64", "arm64", 3},
	} {
		if got := m.get(step.snap, step.n, find(step.found)); got != step.want || calls != step.calls {
			t.Fatalf("get(gen %d, %s) = %q after %d lookups, want %q after %d", step.snap.Gen, step.n.Name, got, calls, step.want, step.calls)
		}
	}
	k := &config.Node{Name: "k", Image: "x86", Kernel: "boot/other"}
	if got := m.get(s2, k, find("riscv64")); got != "riscv64" || calls != 4 {
		t.Fatalf("another kernel: %q after %d lookups", got, calls)
	}
	off := &archMemo{}
	for i := range 3 {
		if got := off.get(s1, a, find("x86_64")); got != "x86_64" || calls != 5+i {
			t.Fatalf("zero interval: %q after %d lookups", got, calls)
		}
	}
}
