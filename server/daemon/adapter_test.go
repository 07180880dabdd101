package daemon

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/wwcluster/ww/server/artifact"
	"github.com/wwcluster/ww/server/health"
	"github.com/wwcluster/ww/server/provision"
)

// TestBuildFailureDegradesHealth: a build failing for a server reason (a
// full disk) makes the "build" component degraded with the reason; a
// missing kernel (the node's config) does not; a good build clears it.
func TestBuildFailureDegradesHealth(t *testing.T) {
	reg := health.New()
	a := builderAdapter{health: reg}
	if _, err := a.artifact(nil, fmt.Errorf("image %q: %w", "debian", artifact.ErrNotFound)); !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("not-found error = %v", err)
	}
	if _, ok := reg.Components(); !ok {
		t.Error("a missing kernel degraded health")
	}
	enospc := fmt.Errorf("write state/cache/ab.img.gz: %w", syscall.ENOSPC)
	if _, err := a.artifact(nil, enospc); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("err = %v", err)
	}
	list, ok := reg.Components()
	if ok || len(list) != 1 || list[0].Name != "build" || list[0].Reason != enospc.Error() {
		t.Fatalf("health after ENOSPC: %+v", list)
	}
	if _, err := a.artifact(&artifact.Artifact{Name: "x"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.Components(); !ok {
		t.Error("still degraded after a good build")
	}
}
