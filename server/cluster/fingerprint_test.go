package cluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/dhcp"
	"github.com/wwcluster/ww/server/etcdstate"
)

// A copy of a tree (cp -a, as rsync -a) has another inode for every file
// but must publish the same fingerprint; an edit must change it.
func TestPortableFingerprintSurvivesCopies(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a")
	for p, data := range map[string]string{
		"images/img/rootfs/etc/hostname": "x\n",
		"images/img/rootfs/bin/sh":       "sh",
		"overlays/ov/etc/motd.ww":        "{{.Node.Name}}\n",
	} {
		full := filepath.Join(a, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sh", filepath.Join(a, "images/img/rootfs/bin/bash")); err != nil {
		t.Fatal(err)
	}
	snap := &config.Snapshot{Nodes: &config.Nodes{List: []*config.Node{{Name: "n1", Image: "img", SystemOverlays: []string{"ov"}}}}}
	b := filepath.Join(t.TempDir(), "b")
	if out, err := exec.Command("cp", "-a", a, b).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	fa, fb := portableFingerprint(a, snap), portableFingerprint(b, snap)
	if fa != fb {
		t.Fatalf("copy differs: %s vs %s", fa, fb)
	}
	later := time.Now().Add(time.Hour)
	f := filepath.Join(b, "overlays/ov/etc/motd.ww")
	if err := os.WriteFile(f, []byte("{{.Node.Name}} edited\\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(f, later, later)
	if portableFingerprint(b, snap) == fa {
		t.Fatal("an edited overlay kept the fingerprint")
	}
}

// etcdLeases passes lease states through as words: etcdstate's guard
// against downgrading a binding compares them with its own constants.
func TestLeaseStatesAgree(t *testing.T) {
	if dhcp.StateBound != etcdstate.StateBound || dhcp.StateOffered != etcdstate.StateOffered {
		t.Fatalf("dhcp states %q/%q, etcdstate %q/%q", dhcp.StateBound, dhcp.StateOffered, etcdstate.StateBound, etcdstate.StateOffered)
	}
}
