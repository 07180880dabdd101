package etcdtest

import (
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestStartMembersFailsCleanly: when a member cannot start (its peer port is
// taken), startMembers closes the members it started and returns the error.
// The second of three fails, so the first was never ready (no quorum), and
// closing such a member used to hang forever: StartCluster's retry after a
// port race never came (an etcdstate test hung under go test -count=20).
func TestStartMembersFailsCleanly(t *testing.T) {
	var cps, pps []int
	var taken net.Listener
	for try := 0; taken == nil; try++ {
		var err error
		if cps, pps, err = freePorts(3); err != nil {
			t.Fatal(err)
		}
		// Another process may take a free port meanwhile: try again.
		if taken, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(pps[1]))); err != nil && try == 4 {
			t.Fatalf("listen on a free port: %v", err)
		}
	}
	defer taken.Close()
	done := make(chan error, 1)
	go func() {
		es, err := startMembers(clusterConfigs(filepath.Join(t.TempDir(), "c"), "127.0.0.1", cps, pps))
		for _, e := range es {
			e.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a cluster started with a member's peer port taken")
		}
		t.Logf("startMembers: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("startMembers still closing its members after 2 minutes")
	}
}
