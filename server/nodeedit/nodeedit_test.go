package nodeedit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

const handNodes = `# Hand-written: this comment and the order below must survive every edit.
[profiles.default]
image = "debian"   # trailing comment

[nodes.zz-first]
profiles = ["default"]
[nodes.zz-first.network.eth0]
hwaddr = "52:54:00:00:00:01"
`

const serverTOML = "address = \"10.0.2.1\"\n"

func newTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, s := range map[string]string{config.NodesFile: handNodes, config.ServerFile: serverTOML} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func str(s string) *string { return &s }

func TestEditKeepsHandFileAndValidates(t *testing.T) {
	dir := newTree(t)
	ed := New(dir)
	nodes, err := ed.Edit(func(tr *Tree) error {
		for i := 1; i <= 3; i++ {
			e := &config.Entry{Profiles: []string{"default"}, Network: map[string]*config.NetDevEntry{
				"eth0": {IPAddr: str(fmt.Sprintf("10.0.0.%d", i))}}}
			if err := tr.Add(Node, fmt.Sprintf("c%d", i), e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.List) != 4 || nodes.ByIP["10.0.0.2"].Name != "c2" {
		t.Fatalf("nodes after add: %d", len(nodes.List))
	}
	// Set and delete through a second edit; the hand-written node is refused.
	_, err = ed.Edit(func(tr *Tree) error {
		e, err := tr.Get(Node, "c1")
		if err != nil {
			return err
		}
		e.Image = str("other")
		return tr.Delete(Node, "c3")
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ed.Edit(func(tr *Tree) error { _, err := tr.Get(Node, "zz-first"); return err })
	if err == nil || !strings.Contains(err.Error(), "written by hand in") {
		t.Errorf("edit of a hand-written node: err = %v", err)
	}
	_, err = ed.Edit(func(tr *Tree) error { return tr.Delete(Node, "nope") })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("delete of an unknown node: err = %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, config.NodesFile))
	if err != nil || string(got) != handNodes {
		t.Fatalf("nodes.toml changed by edits:\n%s", got)
	}
	ns, err := config.LoadNodesTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ns.ByName["c3"] != nil || ns.ByName["c1"].Image != "other" || ns.ByName["c2"].Image != "debian" {
		t.Errorf("after set/delete: c3=%v c1=%q c2=%q", ns.ByName["c3"], ns.ByName["c1"].Image, ns.ByName["c2"].Image)
	}
}

func TestEditRefusesInvalidResultAndWritesNothing(t *testing.T) {
	dir := newTree(t)
	ed := New(dir)
	if _, err := ed.Edit(func(tr *Tree) error {
		return tr.Add(Node, "c1", &config.Entry{Profiles: []string{"default"}})
	}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(ed.ManagedPath())
	for name, fn := range map[string]func(*Tree) error{
		"duplicate MAC": func(tr *Tree) error {
			return tr.Add(Node, "c2", &config.Entry{Profiles: []string{"default"},
				Network: map[string]*config.NetDevEntry{"eth0": {HWAddr: str("52:54:00:00:00:01")}}})
		},
		"missing profile": func(tr *Tree) error {
			return tr.Add(Node, "c2", &config.Entry{Profiles: []string{"gpu"}})
		},
		"bad name": func(tr *Tree) error { return tr.Add(Node, "a/b", &config.Entry{Image: str("x")}) },
		"exists":   func(tr *Tree) error { return tr.Add(Profile, "default", &config.Entry{}) },
	} {
		if _, err := ed.Edit(fn); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	after, _ := os.ReadFile(ed.ManagedPath())
	if string(before) != string(after) {
		t.Errorf("refused edits changed %s", ed.ManagedPath())
	}
}

// Edits from many goroutines (each with its own lock file descriptor, as
// separate processes would have) must all land: none overwrites another.
func TestConcurrentEditsSerialize(t *testing.T) {
	dir := newTree(t)
	const n = 12
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := New(dir).Edit(func(tr *Tree) error {
				return tr.Add(Node, fmt.Sprintf("p%02d", i), &config.Entry{Profiles: []string{"default"}})
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ns, err := config.LoadNodesTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns.List) != n+1 {
		t.Fatalf("%d nodes after %d concurrent adds, want %d", len(ns.List), n, n+1)
	}
}

func TestEditInOtherNodesDirFile(t *testing.T) {
	dir := newTree(t)
	os.MkdirAll(filepath.Join(dir, config.NodesDir), 0o755)
	rack := filepath.Join(dir, config.NodesDir, "rack1.toml")
	os.WriteFile(rack, []byte("[nodes.r1]\nprofiles = [\"default\"]\n"), 0o644)
	if _, err := New(dir).Edit(func(tr *Tree) error {
		e, err := tr.Get(Node, "r1")
		if err != nil {
			return err
		}
		e.Kernel = str("boot/vmlinuz-x")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(rack)
	if !strings.Contains(string(data), `kernel = "boot/vmlinuz-x"`) {
		t.Errorf("rack1.toml not edited in place:\n%s", data)
	}
	if _, err := os.Stat(New(dir).ManagedPath()); !os.IsNotExist(err) {
		t.Errorf("managed.toml written for an edit of rack1.toml: %v", err)
	}
}

// TestEditRewritesOnlyWhatChanged: an edit writes the managed file in the
// plain form (read back by the fast path), keeps every other entry as it
// was, refuses a value TOML cannot hold without writing anything, and a
// delete and re-add of one name in one edit works.
func TestEditRewritesOnlyWhatChanged(t *testing.T) {
	dir := newTree(t)
	ed := New(dir)
	add := func(names ...string) {
		t.Helper()
		_, err := ed.Edit(func(tr *Tree) error {
			for i, n := range names {
				e := &config.Entry{Profiles: []string{"default"}, Tags: map[string]string{"rack": "r1", "odd key": `a "quoted" \ value`},
					Network: map[string]*config.NetDevEntry{"eth0": {HWAddr: str(fmt.Sprintf("52:54:00:00:01:%02x", i)), IPAddr: str(fmt.Sprintf("10.0.1.%d", i+1))}}}
				if err := tr.Add(Node, n, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	add("c1", "c2", "c3")
	before, err := os.ReadFile(ed.ManagedPath())
	if err != nil {
		t.Fatal(err)
	}
	// Change one node: only its lines change.
	if _, err := ed.Edit(func(tr *Tree) error {
		e, err := tr.Get(Node, "c2")
		if err != nil {
			return err
		}
		e.Tags["rack"] = "r2"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(ed.ManagedPath())
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(string(before), "[nodes.c2.tags]\n\"odd key\" = \"a \\\"quoted\\\" \\\\ value\"\nrack = \"r1\"",
		"[nodes.c2.tags]\n\"odd key\" = \"a \\\"quoted\\\" \\\\ value\"\nrack = \"r2\"", 1); string(after) != want || want == string(before) {
		t.Errorf("managed.toml after changing c2's rack:\n%s\nwant:\n%s", after, want)
	}
	nodes, err := config.LoadNodesTree(dir)
	if err != nil || nodes.ByName["c2"].Tags["rack"] != "r2" || nodes.ByName["c1"].Tags["odd key"] != `a "quoted" \ value` {
		t.Fatalf("reload: %v", err)
	}
	// Invalid UTF-8 cannot be written: refused, file untouched.
	_, err = ed.Edit(func(tr *Tree) error {
		e, err := tr.Get(Node, "c1")
		if err != nil {
			return err
		}
		e.Tags["bad"] = "\xff"
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("invalid UTF-8 edit: %v", err)
	}
	if now, _ := os.ReadFile(ed.ManagedPath()); string(now) != string(after) {
		t.Error("a refused edit changed managed.toml")
	}
	// Delete and add again under the same name, in one edit.
	if _, err := ed.Edit(func(tr *Tree) error {
		if _, err := tr.Get(Node, "c3"); err != nil {
			return err
		}
		if err := tr.Delete(Node, "c3"); err != nil {
			return err
		}
		return tr.Add(Node, "c3", &config.Entry{Profiles: []string{"default"}, Tags: map[string]string{"new": "yes"}})
	}); err != nil {
		t.Fatalf("delete and re-add: %v", err)
	}
	if nodes, err := config.LoadNodesTree(dir); err != nil || nodes.ByName["c3"].Tags["new"] != "yes" || len(nodes.ByName["c3"].Network) != 0 {
		t.Errorf("c3 after delete and re-add: %v %+v", err, nodes.ByName["c3"])
	}
}

// TestEditRefusalNamesLine: a refused edit names the line the error would
// be on in the file as it would have been written.
func TestEditRefusalNamesLine(t *testing.T) {
	dir := newTree(t)
	ed := New(dir)
	_, err := ed.Edit(func(tr *Tree) error {
		if err := tr.Add(Node, "a1", &config.Entry{Profiles: []string{"default"}}); err != nil {
			return err
		}
		return tr.Add(Node, "a2", &config.Entry{Profiles: []string{"default"}, Root: str("nfs")})
	})
	if err == nil || !strings.Contains(err.Error(), "managed.toml:10: nodes.a2.root: must be") {
		t.Errorf("refusal: %v", err)
	}
	if _, serr := os.Stat(ed.ManagedPath()); serr == nil {
		t.Error("a refused edit wrote managed.toml")
	}
}
