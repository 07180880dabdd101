package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is the store's clock in tests: it moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestStore(t *testing.T) (*Store, string, *fakeClock) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, ServerFile), goodServer)
	writeFile(t, filepath.Join(dir, NodesFile), goodNodes)
	st, err := NewStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Now()}
	st.now = clock.Now
	return st, dir, clock
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeInPlace rewrites path the way `cat new > path` does: truncate, then
// write (here in two parts, the state between them is a half-written file).
func writeInPlace(t *testing.T, path, first, rest string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, part := range []string{first, rest} {
		if _, err := f.WriteString(part); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStoreWaitsForInPlaceWrite: a file rewritten in place is read only
// after it kept the same stamp for the settle period; a half-written but
// valid file (fewer nodes) is never loaded.
func TestStoreWaitsForInPlaceWrite(t *testing.T) {
	st, dir, clock := newTestStore(t)
	path := filepath.Join(dir, NodesFile)
	gen := st.Current().Gen
	// Half written: only the profiles and n002 (valid TOML, one node).
	half := goodNodes[:strings.Index(goodNodes, "[nodes.n001]")]
	writeFile(t, path, half)
	if snap := st.Fresh(); snap.Gen != gen || len(snap.Nodes.List) != 2 {
		t.Fatalf("half-written file loaded at once: gen %d, %d nodes", snap.Gen, len(snap.Nodes.List))
	}
	if !st.Pending() {
		t.Fatal("a changed file is not reported pending")
	}
	// (The clock stays well within the settle period of the files' ctime
	// until the last step.)
	clock.Add(DefaultSettle / 4)
	// The writer finishes; the settle period starts again.
	writeFile(t, path, goodNodes+"\n[nodes.n003]\nprofiles = [\"default\"]\n")
	clock.Add(DefaultSettle / 4)
	if snap := st.Fresh(); snap.Gen != gen {
		t.Fatalf("reloaded before the file settled: gen %d", snap.Gen)
	}
	clock.Add(DefaultSettle)
	snap := st.Fresh()
	if snap.Gen != gen+1 || len(snap.Nodes.List) != 3 || st.Pending() || st.LastError() != nil {
		t.Fatalf("settled file not loaded: gen %d, %d nodes, pending %v, err %v",
			snap.Gen, len(snap.Nodes.List), st.Pending(), st.LastError())
	}
}

// TestStoreRecreatedFileWaits: after nodes.toml was deleted (refused,
// degraded), a new file written in its place also waits to settle.
func TestStoreRecreatedFileWaits(t *testing.T) {
	st, dir, clock := newTestStore(t)
	path := filepath.Join(dir, NodesFile)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if snap := st.Fresh(); len(snap.Nodes.List) != 2 || st.LastError() == nil {
		t.Fatalf("missing nodes.toml: %d nodes, err %v", len(snap.Nodes.List), st.LastError())
	}
	writeFile(t, path, goodNodes[:strings.Index(goodNodes, "[nodes.n001]")]) // half written: one node
	if snap := st.Fresh(); len(snap.Nodes.List) != 2 || !st.Pending() {
		t.Fatalf("a file created in place loaded before it settled: %d nodes", len(snap.Nodes.List))
	}
	writeFile(t, path, goodNodes)
	st.Fresh() // seen changed: the settle period starts
	clock.Add(DefaultSettle)
	if snap := st.Fresh(); len(snap.Nodes.List) != 2 || st.LastError() != nil || st.Pending() {
		t.Fatalf("settled file: %d nodes, err %v", len(snap.Nodes.List), st.LastError())
	}
}

// TestStoreRenamedFileLoadsAtOnce: a file replaced by rename is complete.
func TestStoreRenamedFileLoadsAtOnce(t *testing.T) {
	st, dir, _ := newTestStore(t)
	tmp := filepath.Join(dir, ".nodes.toml.tmp")
	writeFile(t, tmp, goodNodes+"\n[nodes.n003]\nprofiles = [\"default\"]\n")
	if err := os.Rename(tmp, filepath.Join(dir, NodesFile)); err != nil {
		t.Fatal(err)
	}
	if snap := st.Fresh(); len(snap.Nodes.List) != 3 {
		t.Fatalf("renamed file not loaded on the next request: %d nodes", len(snap.Nodes.List))
	}
}

// TestStoreRefusesNoNodes: a nodes.toml without nodes while the last good
// config had some is refused like any bad edit.
func TestStoreRefusesNoNodes(t *testing.T) {
	st, dir, _ := newTestStore(t)
	reloads := 0
	st.OnReload = func(*Snapshot) { reloads++ }
	for _, empty := range []string{"", "# nothing yet\n", "[profiles.default]\nimage = \"debian\"\n"} {
		writeFile(t, filepath.Join(dir, NodesFile), empty)
		err := st.Reload()
		var ce *Error
		if !errors.As(err, &ce) || !strings.HasSuffix(ce.File, NodesFile) || !strings.Contains(err.Error(), "no nodes") {
			t.Errorf("%q: error = %v", empty, err)
		}
		if st.LastError() == nil {
			t.Errorf("%q: not degraded", empty)
		}
		if n := len(st.Current().Nodes.List); n != 2 {
			t.Errorf("%q: last good config not kept: %d nodes", empty, n)
		}
	}
	if reloads != 0 {
		t.Errorf("%d reloads", reloads)
	}
	writeFile(t, filepath.Join(dir, NodesFile), goodNodes)
	if err := st.Reload(); err != nil || st.LastError() != nil {
		t.Errorf("good file after an empty one: %v", err)
	}
}

// TestStoreInPlaceRewrites: rewriting nodes.toml in place 40 times while
// requests and the watcher look at it never loads a file with fewer nodes.
func TestStoreInPlaceRewrites(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, ServerFile), goodServer)
	writeFile(t, filepath.Join(dir, NodesFile), goodNodes)
	st, err := NewStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var bad, good atomic.Int64
	st.OnReload = func(s *Snapshot) {
		if len(s.Nodes.List) != 2 {
			bad.Add(1)
		} else {
			good.Add(1)
		}
	}
	done := make(chan struct{})
	if err := st.Watch(done); err != nil {
		t.Fatal(err)
	}
	defer close(done)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // requests
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				if n := len(st.Fresh().Nodes.List); n != 2 {
					bad.Add(1)
				}
			}
		}
	}()
	cut := strings.Index(goodNodes, "[nodes.n001]")
	for range 40 {
		writeInPlace(t, filepath.Join(dir, NodesFile), goodNodes[:cut], goodNodes[cut:])
	}
	close(stop)
	wg.Wait()
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	if bad.Load() != 0 {
		t.Errorf("%d reloads or requests saw a config without all nodes", bad.Load())
	}
	if n := len(st.Current().Nodes.List); n != 2 {
		t.Errorf("final config has %d nodes", n)
	}
}

func TestBootFilesResolved(t *testing.T) {
	root := t.TempDir()
	tftpDir := filepath.Join(root, "ipxe")
	elsewhere := filepath.Join(root, "boot")
	for _, d := range []string{tftpDir, elsewhere} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(elsewhere, "ipxe.efi"), "EFI")
	writeFile(t, filepath.Join(tftpDir, "undionly.kpxe"), "BIOS")
	// Debian 12: /usr/lib/ipxe/ipxe.efi -> /boot/ipxe.efi
	if err := os.Symlink(filepath.Join(elsewhere, "ipxe.efi"), filepath.Join(tftpDir, "ipxe.efi")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../boot", filepath.Join(tftpDir, "up")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(tftpDir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(root, ServerFile)
	writeFile(t, cfg, "address = \"10.0.0.1\"\n[dhcp]\nefi_file = \"missing.efi\"\narm64_file = \"adir\"\n"+
		"\n[tftp]\ndir = \""+tftpDir+"\"\n")
	s, err := LoadServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := s.BootFile("ipxe.efi"); !ok || p != filepath.Join(elsewhere, "ipxe.efi") {
		t.Errorf("BootFile(ipxe.efi) = %q, %v", p, ok)
	}
	if p, ok := s.BootFile("/undionly.kpxe"); !ok || p != filepath.Join(tftpDir, "undionly.kpxe") {
		t.Errorf("BootFile(/undionly.kpxe) = %q, %v", p, ok)
	}
	for _, name := range []string{"up/ipxe.efi", "../boot/ipxe.efi", "missing.efi", "adir", "ipxe.lkrn"} {
		if p, ok := s.BootFile(name); ok {
			t.Errorf("BootFile(%q) = %q: only configured, resolvable names", name, p)
		}
	}
	var msgs []string
	for _, e := range s.BootFileProblems() {
		msgs = append(msgs, e.Error())
	}
	got := strings.Join(msgs, "\n")
	for _, want := range []string{cfg + ":3: dhcp.efi_file: boot file \"missing.efi\"", cfg + ":4: dhcp.arm64_file: boot file \"adir\"", "not a regular file"} {
		if !strings.Contains(got, want) {
			t.Errorf("problems %q lack %q", got, want)
		}
	}
	if len(msgs) != 2 {
		t.Errorf("%d problems, want 2: %q", len(msgs), got)
	}
}

// TestPublicNodeIsNodeWithoutSecrets: PublicNode has every field of Node
// but the asset key, so a field added to Node must be added here on purpose.
func TestPublicNodeIsNodeWithoutSecrets(t *testing.T) {
	fields := func(v any) map[string]reflect.Type {
		m := map[string]reflect.Type{}
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			if rt.Field(i).IsExported() { // unexported: load bookkeeping
				m[rt.Field(i).Name] = rt.Field(i).Type
			}
		}
		return m
	}
	want := fields(Node{})
	delete(want, "AssetKey")
	if got := fields(PublicNode{}); !reflect.DeepEqual(got, want) {
		t.Errorf("PublicNode fields %v, want Node's without AssetKey %v", got, want)
	}
	ns, err := ParseNodes("nodes.toml", []byte(goodNodes))
	if err != nil {
		t.Fatal(err)
	}
	if len(ns.Public) != len(ns.List) {
		t.Fatalf("%d public nodes for %d nodes", len(ns.Public), len(ns.List))
	}
	for i, n := range ns.List {
		p := ns.Public[i]
		if p.Name != n.Name || !reflect.DeepEqual(p.Primary(), n.Primary()) || !reflect.DeepEqual(p.Tags, n.Tags) {
			t.Errorf("public %+v does not match %+v", p, n)
		}
	}
}

// TestStoreFreshNeverServesAnOlderGeneration: while a watcher goroutine
// reloads, a request that comes after an edit (a file replaced by rename)
// sees that edit. The stamps of a load and its snapshot are published
// together, so no request can find the new stamps with the old snapshot.
func TestStoreFreshNeverServesAnOlderGeneration(t *testing.T) {
	st, dir, _ := newTestStore(t)
	st.log = slog.New(slog.DiscardHandler)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // what Watch does on every event, as fast as it can
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
				_, _ = st.reload(false)
			}
		}
	}()
	defer func() { close(done); wg.Wait() }()
	nodes := goodNodes
	for i := 3; i < 300; i++ {
		nodes += fmt.Sprintf("\n[nodes.n%03d]\nprofiles = [\"default\"]\n", i)
		tmp := filepath.Join(dir, ".nodes.toml.tmp")
		writeFile(t, tmp, nodes)
		if err := os.Rename(tmp, filepath.Join(dir, NodesFile)); err != nil {
			t.Fatal(err)
		}
		if got := len(st.Fresh().Nodes.List); got != i {
			t.Fatalf("edit %d: the next request saw %d nodes, want %d (an older generation)", i, got, i)
		}
	}
}
