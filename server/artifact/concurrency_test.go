package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFreshGroupNoStaleResult: a caller arriving while a call runs does not
// get that call's result but the next one's, which everyone queued shares.
func TestFreshGroupNoStaleResult(t *testing.T) {
	var g freshGroup[string, int]
	var started atomic.Int32
	release := make(chan struct{})
	fn := func() (int, error) {
		n := int(started.Add(1))
		<-release
		return n, nil
	}
	results := make(chan int, 3)
	go func() { v, _ := g.Do(bg, "k", fn); results <- v }()
	waitFor(t, "call 1 to start", func() bool { return started.Load() == 1 })
	// Two callers arrive while call 1 runs.
	for range 2 {
		go func() { v, _ := g.Do(bg, "k", fn); results <- v }()
	}
	waitFor(t, "two callers to queue", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		st := g.m["k"]
		return st != nil && st.next != nil && st.next.waiters == 2
	})
	release <- struct{}{} // end call 1
	if v := <-results; v != 1 {
		t.Fatalf("first caller got call %d", v)
	}
	release <- struct{}{} // end call 2
	for range 2 {
		if v := <-results; v != 2 {
			t.Fatalf("a caller that arrived during call 1 got call %d, want 2", v)
		}
	}
	if started.Load() != 2 {
		t.Errorf("%d calls, want 2", started.Load())
	}
	g.mu.Lock()
	if len(g.m) != 0 {
		t.Error("state left behind")
	}
	g.mu.Unlock()
}

// TestFreshGroupStress: many concurrent callers in loops; every result comes
// from a call that started after the caller arrived, and calls are shared.
func TestFreshGroupStress(t *testing.T) {
	var g freshGroup[int, int64]
	var seq atomic.Int64 // calls started
	var calls atomic.Int64
	fn := func() (int64, error) {
		n := seq.Add(1)
		calls.Add(1)
		time.Sleep(200 * time.Microsecond)
		return n, nil
	}
	const goroutines, rounds = 64, 50
	var wg sync.WaitGroup
	var fails atomic.Int64
	for i := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				before := seq.Load() // calls started before we arrive
				v, err := g.Do(bg, i%2, fn)
				if err != nil || v <= before {
					fails.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if fails.Load() > 0 {
		t.Errorf("%d stale or failed results", fails.Load())
	}
	total := int64(goroutines * rounds)
	t.Logf("%d calls for %d requests", calls.Load(), total)
	if calls.Load() > total/4 {
		t.Errorf("%d calls for %d requests: not coalesced", calls.Load(), total)
	}
}

func TestFreshGroupBurst(t *testing.T) {
	var g freshGroup[string, int]
	var calls atomic.Int32
	gate := make(chan struct{})
	fn := func() (int, error) {
		calls.Add(1)
		<-gate
		return 0, nil
	}
	// One call runs; 100 callers arrive meanwhile: exactly one more call.
	go g.Do(bg, "k", fn)
	waitFor(t, "start", func() bool { return calls.Load() == 1 })
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() { defer wg.Done(); g.Do(bg, "k", fn) }()
	}
	waitFor(t, "100 queued", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.m["k"].next != nil && g.m["k"].next.waiters == 100
	})
	close(gate)
	wg.Wait()
	if calls.Load() != 2 {
		t.Errorf("%d calls, want 2", calls.Load())
	}
}

func TestFreshGroupCancelAndPanic(t *testing.T) {
	var g freshGroup[string, int]
	gate := make(chan struct{})
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error)
	go func() {
		_, err := g.Do(ctx, "k", func() (int, error) { <-gate; return 1, nil })
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancel: %v", err)
	}
	close(gate)
	if _, err := g.Do(bg, "p", func() (int, error) { panic("boom") }); err == nil {
		t.Error("panic not turned into an error")
	}
}

// TestConcurrentBuildOnce: 50 goroutines asking for the same node's overlays
// and image build each cache file once.
func TestConcurrentBuildOnce(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	snap := snapshot(t, testNodesTOML)
	b, reg := newBuilder(t, tt.root)
	n := snap.Nodes.ByName["n001"]
	var wg sync.WaitGroup
	etags := make([][3]string, 50)
	errs := make(chan error, 150)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := b.SystemOverlay(bg, snap, n)
			if err != nil {
				errs <- err
				return
			}
			r, err := b.RuntimeOverlay(bg, snap, n)
			if err != nil {
				errs <- err
				return
			}
			im, err := b.Image(bg, snap, n)
			if err != nil {
				errs <- err
				return
			}
			etags[i] = [3]string{s.ETag, r.ETag, im.ETag}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range etags {
		if etags[i] != etags[0] {
			t.Fatalf("different artifacts: %v vs %v", etags[i], etags[0])
		}
	}
	// wwinit: files, rendered hosts, node; generic: files, node.
	for kind, want := range map[string]float64{"image": 1, "overlay_files": 2, "overlay_rendered": 1, "overlay_node": 2} {
		if n := counter(t, reg, "wwserver_build_builds_total", kind); n != want {
			t.Errorf("%s built %v times, want %v", kind, n, want)
		}
	}
	hits := counter(t, reg, "wwserver_build_cache_hits_total", "overlay_node")
	misses := counter(t, reg, "wwserver_build_cache_misses_total", "overlay_node")
	if hits+misses != 100 || misses < 2 {
		t.Errorf("system_node hits %v misses %v", hits, misses)
	}
	t.Logf("overlay walks: %v, image walks: %v (for 50 concurrent requests each)",
		counter(t, reg, "wwserver_build_tree_walks_total", "overlay"),
		counter(t, reg, "wwserver_build_tree_walks_total", "image"))
}

// TestConcurrentEdits: requests racing with edits never fail and, once the
// edits stop, serve the last state.
func TestConcurrentEdits(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	snap := snapshot(t, testNodesTOML)
	b, _ := newBuilder(t, tt.root)
	n := snap.Nodes.ByName["n001"]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				a, err := b.SystemOverlay(bg, snap, n)
				if err != nil {
					t.Error(err)
					return
				}
				readAll(t, a)
			}
		}()
	}
	for i := range 30 {
		tt.file("overlays/wwinit/etc/motd", fmt.Sprintf("version %d\n", i), 0o644)
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	a, err := b.SystemOverlay(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	if got := unpack(t, a)["etc/motd"].data; got != "version 29\n" {
		t.Errorf("after edits: %q", got)
	}
}

// TestSymlinkEscape: symlinks are archived as symlinks, never followed, and
// no path through a symlinked directory reads outside the tree.
func TestSymlinkEscape(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	secret := tt.file("outside/secret", "TOP SECRET", 0o600)
	tt.symlink("overlays/wwinit/etc/shadow", "/etc/shadow")
	tt.symlink("overlays/wwinit/etc/secret", secret)
	tt.symlink("overlays/wwinit/etc/rel", "../../../outside/secret")
	tt.symlink("overlays/wwinit/hostetc", "/etc")
	tt.symlink("images/debian/rootfs/hostetc", filepath.Dir(secret))
	tt.symlink("images/debian/rootfs/relout", "../../../outside")
	snap := snapshot(t, testNodesTOML)
	b, _ := newBuilder(t, tt.root)
	n := *snap.Nodes.ByName["n001"]

	a, err := b.SystemOverlay(bg, snap, &n)
	if err != nil {
		t.Fatal(err)
	}
	files := unpack(t, a)
	for name, target := range map[string]string{
		"etc/shadow": "/etc/shadow", "etc/secret": secret, "etc/rel": "../../../outside/secret", "hostetc": "/etc",
	} {
		f := files[name]
		if f.hdr.Mode&0o170000 != 0o120000 || f.hdr.Linkname != target {
			t.Errorf("%s: mode %o link %q, want a symlink to %s", name, f.hdr.Mode, f.hdr.Linkname, target)
		}
	}
	for name, f := range files {
		if f.data == "TOP SECRET" || filepath.Dir(name) == "hostetc" {
			t.Errorf("%s: read through a symlink", name)
		}
	}
	img, err := b.Image(bg, snap, &n)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range unpack(t, img) {
		if f.data == "TOP SECRET" {
			t.Errorf("image %s: read through a symlink", name)
		}
	}
	// A kernel path through a symlinked directory or a symlink out of the
	// tree cannot be read.
	for _, k := range []string{"hostetc/secret", "relout/secret"} {
		n.Kernel = k
		a, err := b.Kernel(bg, snap, &n)
		if err == nil {
			t.Errorf("kernel %s: served %q", k, readAll(t, a))
		}
	}
	// A kernel symlink pointing out of the tree is taken inside it (chroot).
	tt.symlink("images/debian/rootfs/boot/vmlinuz-9.9.9", secret)
	n.Kernel = ""
	if a, err := b.Kernel(bg, snap, &n); err == nil {
		t.Errorf("kernel symlink out of the tree: served %q", readAll(t, a))
	} else if !errors.Is(err, ErrNotFound) {
		t.Errorf("kernel symlink out of the tree: %v", err)
	}
	// The walker itself: a directory swapped for a symlink is not descended.
	var seen []string
	if err := walkTree(filepath.Join(tt.root, "overlays/wwinit"), func(e *entry, _ *os.Root, _ string) error {
		seen = append(seen, e.rel)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, s := range seen {
		if filepath.Dir(s) == "hostetc" {
			t.Errorf("walk followed a symlinked directory: %s", s)
		}
	}
}

// TestBuildSlotsBoundConcurrency: many different keys built at once never
// run more than MaxBuilds fills at the same time.
func TestBuildSlotsBoundConcurrency(t *testing.T) {
	b, err := New(Options{Root: t.TempDir(), MaxBuilds: 2})
	if err != nil {
		t.Fatal(err)
	}
	var running, peak atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.get(context.Background(), kinds[0], fmt.Sprintf("%064x", i), func(w io.Writer) error {
				n := running.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				<-release
				running.Add(-1)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	// Wait until the slots are full, then let everything finish.
	deadline := time.Now().Add(10 * time.Second)
	for running.Load() < 2 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if got := peak.Load(); got != 2 {
		t.Fatalf("peak concurrent builds = %d, want exactly MaxBuilds = 2", got)
	}
}

// TestWaitersShareSlowBuild: requests arriving while the image is being
// built wait for that build (none fails, none starts another) and all get
// its artifact; one that gives up does not stop the build for the others.
func TestWaitersShareSlowBuild(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	snap := snapshot(t, testNodesTOML)
	b, reg := newBuilder(t, tt.root)
	started := make(chan struct{})
	release := make(chan struct{})
	b.beforeBuild = func(k kind) {
		if k == kindImage {
			close(started)
			<-release
		}
	}
	const waiters = 40
	type result struct {
		etag string
		err  error
	}
	results := make(chan result, waiters+1)
	ask := func(ctx context.Context, n string) {
		a, err := b.Image(ctx, snap, snap.Nodes.ByName[n])
		if err != nil {
			results <- result{err: err}
			return
		}
		readAll(t, a)
		results <- result{etag: a.ETag}
	}
	go ask(bg, "n001")
	<-started
	giveUp, cancel := context.WithCancel(bg)
	go ask(giveUp, "n002")
	for i := range waiters - 1 {
		go ask(bg, []string{"n001", "n002"}[i%2])
	}
	// Every request has joined the build in flight.
	waitFor(t, "every request to join the build", func() bool { return b.builds.joined() == waiters+1 })
	cancel()
	if r := <-results; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("request that gave up: %+v, want context.Canceled", r)
	}
	close(release)
	var etag string
	for range waiters {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if etag == "" {
			etag = r.etag
		}
		if r.etag != etag {
			t.Fatalf("artifacts %s and %s", r.etag, etag)
		}
	}
	if n := counter(t, reg, "wwserver_build_builds_total", "image"); n != 1 {
		t.Errorf("image built %v times, want 1", n)
	}
}
