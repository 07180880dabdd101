package hostkeys

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

// Keys are OpenSSH's own format (ssh-keygen derives the same public key),
// 0600 in 0700 directories, made once, and pruned with their node.
func TestKeysOpenSSHFormatStablePruned(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatalf("ssh-keygen (openssh-client, in TEST_PACKAGES): %v", err)
	}
	root := t.TempDir()
	s := New(root)
	files, err := s.EnsureAll([]string{"n1", "n2"}, All, 2)
	if err != nil || files != 2 {
		t.Fatalf("EnsureAll: %d %v", files, err)
	}
	first, err := s.Node("n1")
	if err != nil || len(first) != 6 {
		t.Fatalf("n1 has %d key files (%v)", len(first), err)
	}
	for _, typ := range All {
		priv := s.Path("nodes", "n1", keyFile(typ))
		out, err := exec.Command(keygen, "-y", "-f", priv).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen -y %s: %v\n%s", typ, err, out)
		}
		pub, _ := os.ReadFile(priv + ".pub")
		if got, want := strings.Fields(string(out)), strings.Fields(string(pub)); got[0] != want[0] || got[1] != want[1] {
			t.Errorf("%s: ssh-keygen derives %q, .pub holds %q", typ, got[:2], want[:2])
		}
		for _, p := range []string{priv, priv + ".pub"} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v %v", p, fi.Mode(), err)
			}
		}
	}
	for _, d := range []string{s.Path(), s.Path("nodes"), s.Path("nodes", "n1")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v", d, fi.Mode(), err)
		}
	}
	// made once: asking again changes nothing
	if made, err := s.EnsureAll([]string{"n1", "n2"}, All, 2); err != nil || made != 0 {
		t.Fatalf("second EnsureAll made %d (%v)", made, err)
	}
	again, _ := s.Node("n1")
	for i := range first {
		if first[i] != again[i] {
			t.Fatalf("%s changed", first[i].Name)
		}
	}
	kh, err := s.KnownHosts([]*config.PublicNode{{Name: "n1", Network: []config.NetDev{{IPAddr: "10.0.0.1",
		NetDevExtra: config.NetDevExtra{IPAddr6: "fd00::1"}}}}, {Name: "n3"}})
	if err != nil || !strings.Contains(kh, "n1,10.0.0.1,fd00::1 ssh-ed25519 ") || strings.Contains(kh, "\nn3") {
		t.Fatalf("known hosts %q %v", kh, err)
	}
	gone, err := s.Prune([]string{"n1"})
	if err != nil || len(gone) != 1 || gone[0] != "n2" {
		t.Fatalf("prune: %v %v", gone, err)
	}
	if _, err := os.Stat(s.Path("nodes", "n2")); !os.IsNotExist(err) {
		t.Fatalf("n2's keys are still there: %v", err)
	}
	for _, bad := range []string{"", "..", ".x", "a/b"} {
		if _, err := s.Ensure(bad, Cheap); err == nil {
			t.Errorf("Ensure(%q) accepted", bad)
		}
	}
	if left, _ := filepath.Glob(s.Path("nodes", ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// EnsureAll makes a whole generation's new nodes in one commit, completes
// a node that lacks a type, leaves no temporary directory behind, and
// changes nothing the second time.
func TestEnsureAllBatchesNewAndCompletesPartial(t *testing.T) {
	s := New(t.TempDir())
	if _, err := s.Ensure("old", []string{Ed25519}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(s.Path("nodes", "old", keyFile(Ed25519)+".pub"))
	names := []string{"old"}
	for i := range 40 {
		names = append(names, "n"+string(rune('a'+i%26))+strings.Repeat("x", i/26))
	}
	names = append(names, "na") // listed twice
	made, err := s.EnsureAll(names, Cheap, 4)
	if err != nil || made != 41 {
		t.Fatalf("EnsureAll: made %d, %v; want 41 (40 new, old completed)", made, err)
	}
	for _, n := range names {
		files, err := s.Node(n)
		if err != nil || len(files) != 4 {
			t.Fatalf("%s: %d key files (%v), want 4", n, len(files), err)
		}
	}
	after, _ := os.ReadFile(s.Path("nodes", "old", keyFile(Ed25519)+".pub"))
	if string(before) != string(after) {
		t.Error("an existing key was replaced")
	}
	ents, _ := os.ReadDir(s.Path("nodes"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	if made, err := s.EnsureAll(names, Cheap, 4); err != nil || made != 0 {
		t.Errorf("second EnsureAll: made %d, %v; want 0", made, err)
	}
}
