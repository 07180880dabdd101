package status

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/atomicfile"
	"github.com/wwcluster/ww/server/config"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var t0 = time.Unix(1_700_000_000, 0)

func testNodes(t testing.TB, n int) *config.Nodes {
	t.Helper()
	var b strings.Builder
	b.WriteString("[profiles.default]\nimage = \"debian\"\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "[nodes.c%05d]\nprofiles = [\"default\"]\n[nodes.c%05d.network.eth0]\nhwaddr = \"52:54:00:%02x:%02x:%02x\"\nipaddr = \"10.%d.%d.%d\"\n",
			i, i, i>>16&0xff, i>>8&0xff, i&0xff, i>>16&0xff, i>>8&0xff, i&0xff)
	}
	ns, err := config.ParseNodes("nodes.toml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func mac(i int) string { return fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff) }

func newTestStore(t testing.TB, path string) (*Store, *clock, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	st, err := Open(path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: t0}
	st.now = c.Now
	return st, c, &logs
}

func TestRecordAndReport(t *testing.T) {
	st, clk, _ := newTestStore(t, "")
	nodes := testNodes(t, 3)
	st.Record(Event{Node: "c00001", MAC: mac(1), IP: "10.0.0.1", Stage: StageIPXE, Sent: "ipxe"})
	clk.Add(5 * time.Second)
	st.Record(Event{Node: "c00001", MAC: mac(1), IP: "10.0.0.1", Stage: StageRuntimeOverlay, Sent: "__RUNTIME__.img.gz"})
	clk.Add(5 * time.Second)
	st.RecordHeartbeat("c00001", mac(1), "10.0.0.1", Heartbeat{Version: "1.2", UptimeSeconds: 42, BootID: "b", RuntimeETag: "e"})
	st.Record(Event{Node: "c00002", MAC: mac(2), Stage: StageKernel, Sent: "vmlinuz-6.1", Time: t0.Add(-time.Hour)})
	st.Record(Event{Node: "c00002", MAC: mac(2), Stage: StageRuntimeOverlay, Sent: "BAD_ASSET", Time: t0.Add(-2 * time.Hour)})
	st.Record(Event{MAC: "52:54:00:ff:ff:01", IP: "10.9.9.9", Stage: StageDHCP})
	st.Record(Event{Node: "gone", Stage: StageIPXE, Sent: "ipxe"})
	st.Record(Event{}) // nothing to key on: ignored

	rep := st.Report(nodes)
	if rep.Now != t0.Add(10*time.Second).Unix() || rep.UpdateIntervalSeconds != 60 {
		t.Errorf("now %d interval %d", rep.Now, rep.UpdateIntervalSeconds)
	}
	if len(rep.Nodes) != 3 {
		t.Fatalf("want 3 configured nodes (removed node dropped), got %+v", rep.Nodes)
	}
	n1, n2, n3 := rep.Nodes[0], rep.Nodes[1], rep.Nodes[2]
	if n1.Name != "c00001" || n1.Stage != StageRuntimeOverlay || n1.Sent != "__RUNTIME__.img.gz" {
		t.Errorf("heartbeat changed the stage: %+v", n1)
	}
	if n1.LastSeen != t0.Add(10*time.Second).Unix() {
		t.Errorf("heartbeat did not refresh last seen: %d", n1.LastSeen)
	}
	if n1.Heartbeat == nil || *n1.Heartbeat != (Heartbeat{Version: "1.2", UptimeSeconds: 42, BootID: "b", RuntimeETag: "e"}) {
		t.Errorf("heartbeat = %+v", n1.Heartbeat)
	}
	if n2.Stage != StageRuntimeOverlay || n2.Sent != "BAD_ASSET" {
		t.Errorf("refusal not recorded: %+v", n2)
	}
	if n2.LastSeen != t0.Add(-time.Hour).Unix() {
		t.Errorf("an older event moved last seen back: %d", n2.LastSeen)
	}
	if n3.Stage != "" || n3.LastSeen != 0 || n3.Heartbeat != nil || n3.MAC != mac(3) || n3.IPAddr != "10.0.0.3" {
		t.Errorf("never-seen node = %+v", n3)
	}
	if len(rep.Unknown) != 1 || rep.Unknown[0].Name != "52:54:00:ff:ff:01" || rep.Unknown[0].IPAddr != "10.9.9.9" || rep.Unknown[0].Stage != StageDHCP {
		t.Errorf("unknown = %+v", rep.Unknown)
	}
	// A MAC that was unknown and is now configured is no longer listed as unknown.
	st.Record(Event{MAC: mac(3), Stage: StageDHCP})
	if rep := st.Report(nodes); len(rep.Unknown) != 1 {
		t.Errorf("configured MAC listed as unknown: %+v", rep.Unknown)
	}
	// JSON field names are part of the contract.
	data, err := json.Marshal(st.Report(nodes))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"update_interval_seconds":60`, `"name":"c00001"`, `"mac":"52:54:00:00:00:01"`, `"ipaddr":"10.0.0.1"`,
		`"stage":"RUNTIME_OVERLAY"`, `"sent":"__RUNTIME__.img.gz"`, `"last_seen":0`, `"heartbeat":null`,
		`"heartbeat":{"version":"1.2","uptime_seconds":42,"boot_id":"b","runtime_etag":"e"}`, `"unknown":[`} {
		if !bytes.Contains(data, []byte(k)) {
			t.Errorf("JSON lacks %s: %s", k, data)
		}
	}
}

func TestReportNilNodes(t *testing.T) {
	st, _, _ := newTestStore(t, "")
	st.Record(Event{MAC: "52:54:00:ff:ff:01", Stage: StageDHCP})
	rep := st.Report(nil)
	if rep.Nodes == nil || len(rep.Nodes) != 0 || len(rep.Unknown) != 1 {
		t.Errorf("report = %+v", rep)
	}
	data, _ := json.Marshal(st.Report(&config.Nodes{}))
	if !bytes.Contains(data, []byte(`"nodes":[]`)) {
		t.Errorf("empty node list must encode as [], got %s", data)
	}
}

func TestUnknownCapped(t *testing.T) {
	st, clk, _ := newTestStore(t, "")
	for i := 0; i < MaxUnknown; i++ {
		st.Record(Event{MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), Stage: StageDHCP})
		clk.Add(time.Second)
	}
	st.Record(Event{MAC: "02:ff:ff:ff:ff:ff", Stage: StageDHCP})
	rep := st.Report(nil)
	if want := MaxUnknown - unknownEvictBatch + 1; len(rep.Unknown) != want {
		t.Fatalf("unknown = %d, want %d (cap %d, oldest %d evicted)", len(rep.Unknown), want, MaxUnknown, unknownEvictBatch)
	}
	first := fmt.Sprintf("02:00:00:00:%02x:%02x", unknownEvictBatch>>8, unknownEvictBatch&0xff)
	if rep.Unknown[0].Name != first || rep.Unknown[len(rep.Unknown)-1].Name != "02:ff:ff:ff:ff:ff" {
		t.Errorf("the oldest unknown MACs were not the ones evicted: first %s (want %s) last %s",
			rep.Unknown[0].Name, first, rep.Unknown[len(rep.Unknown)-1].Name)
	}
	for range 3 * MaxUnknown { // a flood stays bounded
		clk.Add(time.Second)
		st.Record(Event{MAC: fmt.Sprintf("06:00:00:%02x:%02x:%02x", clk.Now().Unix()>>16&0xff, clk.Now().Unix()>>8&0xff, clk.Now().Unix()&0xff), Stage: StageDHCP})
	}
	if n := len(st.Report(nil).Unknown); n > MaxUnknown {
		t.Errorf("%d unknown entries after a flood, cap %d", n, MaxUnknown)
	}
}

func TestPersistenceRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", FileName) // state/ does not exist yet
	st, _, _ := newTestStore(t, path)
	st.Record(Event{Node: "c00001", MAC: mac(1), IP: "10.0.0.1", Stage: StageRuntimeOverlay, Sent: "__RUNTIME__.img.gz"})
	st.RecordHeartbeat("c00001", mac(1), "10.0.0.1", Heartbeat{Version: "v", UptimeSeconds: 7, BootID: "id", RuntimeETag: "tag"})
	st.Record(Event{MAC: "52:54:00:ff:ff:01", Stage: StageIPXE, Sent: "ipxe"})
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	nodes := testNodes(t, 2)
	want := st.Report(nodes)

	st2, _, _ := newTestStore(t, path)
	got := st2.Report(nodes)
	a, _ := json.Marshal(want)
	b, _ := json.Marshal(got)
	if !bytes.Equal(a, b) {
		t.Errorf("report changed across restart:\nbefore %s\nafter  %s", a, b)
	}
	if got.Nodes[0].Heartbeat == nil || got.Nodes[0].Heartbeat.BootID != "id" {
		t.Errorf("heartbeat not persisted: %+v", got.Nodes[0])
	}
	// A clean store does not rewrite the file.
	fi1, _ := os.Stat(path)
	if err := os.Chtimes(path, t0, t0); err != nil {
		t.Fatal(err)
	}
	if err := st2.Flush(); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(path); !fi2.ModTime().Equal(t0) || fi1.Size() != fi2.Size() {
		t.Errorf("Flush rewrote an unchanged store")
	}
}

func TestRunFlushesOnCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	st, _, _ := newTestStore(t, path)
	st.FlushInterval = time.Hour // only the final flush can write
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	st.Record(Event{Node: "c00001", Stage: StageKernel, Sent: "vmlinuz"})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st2, _, _ := newTestStore(t, path)
	if rep := st2.Report(testNodes(t, 1)); rep.Nodes[0].Stage != StageKernel {
		t.Errorf("final flush lost the record: %+v", rep.Nodes[0])
	}
}

func TestRunFlushesPeriodically(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	st, _, _ := newTestStore(t, path)
	st.FlushInterval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go st.Run(ctx)
	st.Record(Event{Node: "c00001", Stage: StageKernel, Sent: "vmlinuz"})
	// Wait for the background flush (the condition, not a fixed time).
	deadline := time.Now().Add(10 * time.Second)
	for {
		if data, err := os.ReadFile(path); err == nil && bytes.Contains(data, []byte(`"KERNEL"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not flush a dirty store within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCorruptFileMovedAside(t *testing.T) {
	for name, content := range map[string]string{
		"garbage":       "{not json",
		"truncated":     `{"version":1,"nodes":{"c1":{"stage":"IPX`,
		"wrong version": `{"version":99,"nodes":{},"unknown":{}}`,
		"trailing data": `{"version":1,"nodes":{},"unknown":{}} {}`,
		"unknown field": `{"version":1,"nodes":{"c1":{"stage":"IPXE","bogus":1}},"unknown":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			st, _, logs := newTestStore(t, path)
			if rep := st.Report(nil); len(rep.Unknown) != 0 {
				t.Errorf("corrupt file gave state: %+v", rep)
			}
			if !strings.Contains(logs.String(), "corrupt") {
				t.Errorf("corruption not logged: %q", logs.String())
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("corrupt file still at %s", path)
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("corrupt file not kept aside: %v", aside)
			}
			if data, _ := os.ReadFile(aside[0]); string(data) != content {
				t.Errorf("aside file content changed")
			}
			// The store works and writes a good file again.
			st.Record(Event{Node: "c1", Stage: StageIPXE})
			if err := st.Flush(); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(path, slog.New(slog.DiscardHandler)); err != nil {
				t.Fatal(err)
			}
			if aside2, _ := filepath.Glob(path + ".corrupt-*"); len(aside2) != 1 {
				t.Errorf("good rewritten file was treated as corrupt: %v", aside2)
			}
		})
	}
}

func TestOpenUnreadable(t *testing.T) {
	path := t.TempDir() // a directory cannot be read as the status file
	if _, err := Open(path, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("Open of an unreadable path succeeded")
	}
}

func TestAtomicWriteNoPartialFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	st, clk, _ := newTestStore(t, path)
	nodes := 2000
	st.Record(Event{Node: "c0", Stage: StageIPXE})
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	// A reader never sees a partial file while the writer keeps replacing it.
	stop := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(readErr)
		for {
			select {
			case <-stop:
				return
			default:
			}
			data, err := os.ReadFile(path)
			if err == nil {
				_, err = decodeFile(data)
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	for round := 0; round < 30; round++ {
		for i := 0; i < nodes; i++ {
			st.Record(Event{Node: fmt.Sprintf("c%d", i), MAC: mac(i), Stage: StageRuntimeOverlay, Sent: "__RUNTIME__.img.gz"})
		}
		clk.Add(time.Second)
		if err := st.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	if err := <-readErr; err != nil {
		t.Fatalf("reader saw a partial or bad file: %v", err)
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != FileName {
		t.Errorf("directory holds %v, want only %s", entries, FileName)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v", fi.Mode())
	}
}

func TestFailedWriteKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := atomicfile.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Renaming a file over a non-empty directory fails after the temp file is written.
	blocker := filepath.Join(dir, "blocked")
	st, _, _ := newTestStore(t, blocker)
	if err := os.MkdirAll(filepath.Join(blocker, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteFile(blocker, []byte("new\n"), 0o644); err == nil {
		t.Fatal("write over a directory succeeded")
	}
	if data, _ := os.ReadFile(path); string(data) != "old\n" {
		t.Errorf("old file changed: %q", data)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temp file left behind: %s", e.Name())
		}
	}
	// The store reports the error and stays dirty, so a later flush retries.
	st.Record(Event{Node: "a", Stage: StageIPXE})
	if err := st.Flush(); err == nil || !strings.Contains(err.Error(), "save node status") {
		t.Errorf("Flush error = %v", err)
	}
	if err := os.RemoveAll(blocker); err != nil {
		t.Fatal(err)
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(blocker); !bytes.Contains(data, []byte(`"a"`)) {
		t.Errorf("retried flush did not write: %s", data)
	}
}

func TestJSONCache(t *testing.T) {
	st, clk, _ := newTestStore(t, "")
	nodes := testNodes(t, 3)
	st.Record(Event{Node: "c00001", Stage: StageIPXE, Sent: "ipxe"})
	a, err := st.JSON(nodes)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := st.JSON(nodes)
	if &a[0] != &b[0] {
		t.Error("unchanged status was re-encoded")
	}
	var rep Report
	if err := json.Unmarshal(a, &rep); err != nil || rep.Nodes[0].Stage != StageIPXE {
		t.Fatalf("cached JSON = %s (%v)", a, err)
	}
	// A change within CacheAge is served from the cache; after it, re-encoded.
	st.Record(Event{Node: "c00001", Stage: StageKernel, Sent: "vmlinuz"})
	if c, _ := st.JSON(nodes); &c[0] != &a[0] {
		t.Error("re-encoded within CacheAge")
	}
	clk.Add(st.CacheAge)
	c, _ := st.JSON(nodes)
	if !bytes.Contains(c, []byte(`"KERNEL"`)) {
		t.Errorf("change not visible after CacheAge: %s", c)
	}
	// "now" follows the clock even when nothing changes.
	clk.Add(3 * time.Second)
	d, _ := st.JSON(nodes)
	if err := json.Unmarshal(d, &rep); err != nil || rep.Now != clk.Now().Unix() {
		t.Errorf("now = %d, want %d", rep.Now, clk.Now().Unix())
	}
	// A new config generation or interval is encoded at once.
	nodes2 := testNodes(t, 4)
	if e, _ := st.JSON(nodes2); !bytes.Contains(e, []byte(`"c00004"`)) {
		t.Error("new node set not encoded at once")
	}
	st.SetUpdateInterval(5 * time.Second)
	if f, _ := st.JSON(nodes2); !bytes.Contains(f, []byte(`"update_interval_seconds":5`)) {
		t.Error("new interval not encoded at once")
	}
}

func TestConcurrentRecordReportFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	var logs bytes.Buffer
	st, err := Open(path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	st.CacheAge = 0
	const n, writers, rounds = 200, 8, 200
	nodes := testNodes(t, n)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				for i := w; i < n; i += writers {
					name := fmt.Sprintf("c%05d", i+1)
					if r%3 == 0 {
						st.RecordHeartbeat(name, mac(i+1), "", Heartbeat{Version: "v", UptimeSeconds: int64(r)})
					} else {
						st.Record(Event{Node: name, MAC: mac(i + 1), Stage: StageRuntimeOverlay, Sent: fmt.Sprint(r)})
					}
				}
				st.Record(Event{MAC: fmt.Sprintf("02:00:00:00:00:%02x", w), Stage: StageDHCP})
			}
		}()
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readerErr := make(chan error, 3)
	for _, f := range []func() error{
		func() error { rep := st.Report(nodes); _ = rep; return nil },
		func() error { _, err := st.JSON(nodes); return err },
		st.Flush,
	} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := f(); err != nil {
					readerErr <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(readerErr)
	for err := range readerErr {
		t.Fatal(err)
	}
	// Every node ended on its last event; a heartbeat kept the stage.
	last := fmt.Sprint(rounds - 1)
	if (rounds-1)%3 == 0 {
		last = fmt.Sprint(rounds - 2)
	}
	rep := st.Report(nodes)
	for _, ns := range rep.Nodes {
		if ns.Sent != last || ns.Stage != StageRuntimeOverlay || ns.Heartbeat == nil {
			t.Fatalf("%s = %+v, want sent %s", ns.Name, ns, last)
		}
	}
	if len(rep.Unknown) != writers {
		t.Errorf("unknown = %d", len(rep.Unknown))
	}
	data, err := st.JSON(nodes)
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON Report
	if err := json.Unmarshal(data, &fromJSON); err != nil || fromJSON.Nodes[n-1].Sent != last {
		t.Errorf("JSON after writers stopped is stale: %v", err)
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	st2, err := Open(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := st2.Report(nodes); got.Nodes[n-1].Sent != last {
		t.Errorf("reopened store = %+v", got.Nodes[n-1])
	}
}

func BenchmarkRecord(b *testing.B) {
	st := New(slog.New(slog.DiscardHandler))
	names := make([]string, 10000)
	for i := range names {
		names[i] = fmt.Sprintf("c%05d", i+1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			st.Record(Event{Node: names[i%len(names)], Stage: StageRuntimeOverlay, Sent: "__RUNTIME__.img.gz"})
			i++
		}
	})
}

func seenStore(b *testing.B, n int) (*Store, *config.Nodes) {
	st := New(slog.New(slog.DiscardHandler))
	nodes := testNodes(b, n)
	for i, node := range nodes.List {
		st.Record(Event{Node: node.Name, MAC: mac(i + 1), IP: node.Primary().IPAddr, Stage: StageRuntimeOverlay, Sent: "__RUNTIME__.img.gz"})
		st.RecordHeartbeat(node.Name, mac(i+1), node.Primary().IPAddr, Heartbeat{Version: "1.0.0", UptimeSeconds: 3600, BootID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", RuntimeETag: "\"sha256-abcdef0123456789\""})
	}
	return st, nodes
}

func BenchmarkReport10k(b *testing.B) {
	st, nodes := seenStore(b, 10000)
	b.ReportAllocs()
	for b.Loop() {
		_ = st.Report(nodes)
	}
}

// BenchmarkJSONEncode10k is the cost of one uncached encoding.
func BenchmarkJSONEncode10k(b *testing.B) {
	st, nodes := seenStore(b, 10000)
	st.CacheAge = 0
	data, _ := st.JSON(nodes)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		st.Record(Event{Node: "c00001", Stage: StageRuntimeOverlay}) // invalidate
		if _, err := st.JSON(nodes); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJSONServed10k is GET /status under load while 10,000 nodes
// keep recording: mostly cached bytes, re-encoded every CacheAge.
func BenchmarkJSONServed10k(b *testing.B) {
	st, nodes := seenStore(b, 10000)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			st.Record(Event{Node: nodes.List[i%len(nodes.List)].Name, Stage: StageHeartbeat})
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := st.JSON(nodes); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestDueFlushPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	st, clk, _ := newTestStore(t, path)
	st.Record(Event{Node: "c00001", Stage: StageIPXE, Sent: "ipxe"})
	if err := st.flush(true); err != nil {
		t.Fatal(err)
	}
	written := func() string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	first := written()
	// Only last seen changes: not due until SeenFlushInterval has passed.
	clk.Add(5 * time.Second)
	st.RecordHeartbeat("c00001", "", "", Heartbeat{Version: "v"})
	if err := st.flush(true); err != nil {
		t.Fatal(err)
	}
	if written() != first {
		t.Error("a heartbeat-only change was written before SeenFlushInterval")
	}
	clk.Add(st.SeenFlushInterval)
	if err := st.flush(true); err != nil {
		t.Fatal(err)
	}
	second := written()
	if second == first || !strings.Contains(second, `"version":"v"`) {
		t.Errorf("heartbeat change not written after SeenFlushInterval: %s", second)
	}
	// A stage change is due at once.
	clk.Add(time.Second)
	st.Record(Event{Node: "c00001", Stage: StageKernel, Sent: "vmlinuz"})
	if err := st.flush(true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(written(), `"KERNEL"`) {
		t.Error("a stage change was not written at once")
	}
	// Flush writes pending last-seen changes regardless.
	clk.Add(time.Second)
	st.RecordHeartbeat("c00001", "", "", Heartbeat{Version: "w"})
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(written(), `"version":"w"`) {
		t.Error("Flush skipped a last-seen change")
	}
}

// TestConfigEditKeepsStatus: a node that leaves nodes.toml is hidden from
// reports but keeps its status; it comes back with it, and only an explicit
// Forget / ForgetRemoved (`wwserver status prune`) or RemovedMaxAge drops it.
func TestConfigEditKeepsStatus(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	st, clk, _ := newTestStore(t, path)
	for i := 1; i <= 4; i++ {
		st.Record(Event{Node: fmt.Sprintf("c%05d", i), Stage: StageIPXE, Sent: "ipxe"})
	}
	st.Record(Event{MAC: "52:54:00:ff:ff:01", Stage: StageDHCP})
	all, fewer := testNodes(t, 4), testNodes(t, 2)
	if rep := st.Report(fewer); len(rep.Nodes) != 2 {
		t.Fatalf("report of 2 configured nodes has %d rows", len(rep.Nodes))
	}
	st.Expire(fewer) // what the server runs now and then: nothing is old yet
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	st2, _, _ := newTestStore(t, path) // across a restart too
	for _, s := range []*Store{st, st2} {
		if rep := s.Report(all); rep.Nodes[3].Stage != StageIPXE || rep.Nodes[3].LastSeen == 0 {
			t.Errorf("node 4 lost its status after leaving the config: %+v", rep.Nodes[3])
		}
	}
	// Explicit: by name, then every node not configured.
	if got := st.Forget("c00004", "nope"); len(got) != 1 || got[0] != "c00004" {
		t.Errorf("Forget dropped %v", got)
	}
	if got := st.ForgetRemoved(fewer); len(got) != 1 || got[0] != "c00003" {
		t.Errorf("ForgetRemoved = %v", got)
	}
	if rep := st.Report(all); rep.Nodes[2].Stage != "" || rep.Nodes[3].Stage != "" || rep.Nodes[0].Stage != StageIPXE {
		t.Errorf("after prune: %+v", rep.Nodes)
	}
	// Aging: removed nodes after RemovedMaxAge, unknown MACs after UnknownMaxAge.
	st.Record(Event{Node: "c00003", Stage: StageIPXE})
	clk.Add(UnknownMaxAge + time.Second)
	if removed, unknown := st.Expire(fewer); removed != 0 || unknown != 1 {
		t.Errorf("Expire after a day = %d removed, %d unknown", removed, unknown)
	}
	clk.Add(RemovedMaxAge)
	if removed, _ := st.Expire(fewer); removed != 1 {
		t.Errorf("Expire after %v = %d removed", RemovedMaxAge, removed)
	}
	if rep := st.Report(all); rep.Nodes[0].Stage != StageIPXE {
		t.Errorf("a configured node aged out: %+v", rep.Nodes[0])
	}
}

// BenchmarkRecordUnknownFlood: Record from ever new unknown MACs while the
// unknown table is full (eviction in batches, not a scan per request).
func BenchmarkRecordUnknownFlood(b *testing.B) {
	st := New(slog.New(slog.DiscardHandler))
	for i := 0; i < MaxUnknown; i++ {
		st.Record(Event{MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), Stage: StageDHCP})
	}
	macs := make([]string, 100000)
	for i := range macs {
		macs[i] = fmt.Sprintf("06:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st.Record(Event{MAC: macs[i%len(macs)], Stage: StageDHCP})
	}
}

// TestRecordSameAnswerWritesNothing: the same event again within the same
// second changes nothing (no new version to save); a later second moves
// last seen, and another stage is a change.
func TestRecordSameAnswerWritesNothing(t *testing.T) {
	st, clk, _ := newTestStore(t, "")
	ev := Event{Node: "c00001", MAC: mac(1), IP: "10.0.0.1", Stage: StageIPXE, Sent: "ipxe"}
	st.Record(ev)
	v := st.version.Load()
	st.Record(ev)
	if got := st.version.Load(); got != v {
		t.Fatalf("the same event in the same second bumped the version %d → %d", v, got)
	}
	clk.Add(time.Second)
	st.Record(ev)
	if got := st.version.Load(); got != v+1 {
		t.Fatalf("a later second: version %d, want %d", got, v+1)
	}
	if r := record(st, "c00001"); r.LastSeen != clk.Now().Unix() {
		t.Errorf("last seen %d, want %d", r.LastSeen, clk.Now().Unix())
	}
	ev.Stage, ev.Sent = StageKernel, "vmlinuz"
	st.Record(ev)
	if r := record(st, "c00001"); r.Stage != StageKernel || st.version.Load() != v+2 {
		t.Errorf("another stage: %+v, version %d", r, st.version.Load())
	}
}

// record is node's record as the store holds it.
func record(st *Store, node string) Record {
	sh := st.shard(node)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.m[node]
}
