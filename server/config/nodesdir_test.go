package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, s := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNodesDirMergedWithNodesFile(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		NodesFile: goodNodes,
		"nodes.d/managed.toml": `[nodes.c001]
profiles = ["default"]
[nodes.c001.network.eth0]
hwaddr = "52:54:00:00:01:01"
[nodes.c002]
profiles = ["default"]
discoverable = true
`,
	})
	ns, err := LoadNodesTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns.List) != 4 || ns.ByMAC["52:54:00:00:01:01"].Name != "c001" {
		t.Fatalf("nodes = %d, c001 by MAC = %v", len(ns.List), ns.ByMAC["52:54:00:00:01:01"])
	}
	if c1 := ns.ByName["c001"]; c1.Image != "debian" || !strings.HasSuffix(c1.File, "nodes.d/managed.toml") {
		t.Errorf("c001: profile from nodes.toml not merged or file wrong: %+v", c1)
	}
	if len(ns.Undiscovered) != 1 || ns.Undiscovered[0].Name != "c002" {
		t.Errorf("undiscovered = %v", ns.Undiscovered)
	}
}

func TestNodesDirErrorsNameTheirFile(t *testing.T) {
	cases := []struct {
		name, managed, want string
	}{
		{"duplicate node", "\n\n[nodes.n001]\nprofiles = [\"default\"]\n",
			"nodes.d/managed.toml:3: nodes.n001: also defined in "},
		{"bad mac", "[nodes.c1]\nprofiles = [\"default\"]\n[nodes.c1.network.eth0]\nhwaddr = \"zz\"\n",
			"nodes.d/managed.toml:4: nodes.c1.network.eth0.hwaddr: "},
		{"unknown key", "[nodes.c1]\nimagee = \"x\"\n", "nodes.d/managed.toml:2: nodes.c1.imagee: unknown key"},
		{"duplicate MAC", "[nodes.c1]\nprofiles = [\"default\"]\n[nodes.c1.network.eth0]\nhwaddr = \"52:54:00:00:00:01\"\n",
			"MAC 52:54:00:00:00:01 is also used by"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, map[string]string{NodesFile: goodNodes, "nodes.d/managed.toml": c.managed})
			_, err := LoadNodesTree(dir)
			var ce *Error
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want *Error containing %q", err, c.want)
			}
			if c.name == "duplicate node" && !strings.Contains(err.Error(), "nodes.toml:24") {
				t.Errorf("duplicate error does not name the other file and line: %v", err)
			}
		})
	}
}

func TestDiscoverableMustLiveInNodesDir(t *testing.T) {
	_, err := ParseNodes("nodes.toml", []byte(goodNodes+"\n[nodes.d1]\nprofiles = [\"default\"]\ndiscoverable = true\n"))
	if err == nil || !strings.Contains(err.Error(), "nodes.d1.discoverable") {
		t.Fatalf("err = %v", err)
	}
}

func TestStoreFreshSeesNodesDir(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{ServerFile: goodServer, NodesFile: goodNodes})
	st, err := NewStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Now()}
	st.now = clock.Now
	managed := filepath.Join(dir, NodesDir, "managed.toml")
	// A new directory and file, then an in-place edit of that file.
	writeTree(t, dir, map[string]string{"nodes.d/managed.toml": "[nodes.c1]\nprofiles = [\"default\"]\n"})
	if snap := st.Fresh(); snap.Nodes.ByName["c1"] == nil {
		t.Fatal("new nodes.d file not picked up")
	}
	f, err := os.OpenFile(managed, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("[nodes.c2]\nprofiles = [\"default\"]\n")
	f.Close()
	st.Fresh() // seen changing in place: waits for the settle period
	clock.Add(2 * DefaultSettle)
	if snap := st.Fresh(); snap.Nodes.ByName["c2"] == nil {
		t.Fatal("in-place edit of a nodes.d file not picked up")
	}
	os.Remove(managed)
	if snap := st.Fresh(); snap.Nodes.ByName["c1"] != nil {
		t.Fatal("removed nodes.d file still served")
	}
}

func TestStoreWatchSeesNodesDir(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{ServerFile: goodServer, NodesFile: goodNodes})
	st, err := NewStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan *Snapshot, 16)
	st.OnReload = func(s *Snapshot) { reloaded <- s }
	done := make(chan struct{})
	defer close(done)
	if err := st.Watch(done); err != nil {
		t.Fatal(err)
	}
	// nodes.d appears after the watcher started; files are renamed into it.
	for _, name := range []string{"c1", "c2"} {
		if err := os.MkdirAll(filepath.Join(dir, NodesDir), 0o755); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, NodesDir, ".tmp")
		os.WriteFile(tmp, []byte("[nodes."+name+"]\nprofiles = [\"default\"]\n"), 0o644)
		if err := os.Rename(tmp, filepath.Join(dir, NodesDir, name+".toml")); err != nil {
			t.Fatal(err)
		}
		deadline := time.After(10 * time.Second)
		for found := false; !found; {
			select {
			case s := <-reloaded:
				found = s.Nodes.ByName[name] != nil
			case <-deadline:
				t.Fatalf("watcher did not pick up nodes.d/%s.toml", name)
			}
		}
	}
}
