package artifact

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/fsnotify/fsnotify"
)

// imageFile returns the content of rel in n001's image as served now, and
// whether it is there.
func imageFile(t *testing.T, b *Builder, rel string) (string, bool) {
	t.Helper()
	snap := snapshot(t, testNodesTOML)
	a, err := b.Image(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	f, ok := unpack(t, a)[rel]
	if f.hdr.Linkname != "" {
		return "-> " + f.hdr.Linkname, ok
	}
	return f.data, ok
}

// TestWatchSparesWalks: requests for an unchanged tree do not walk it; an
// edit is seen by the very next request, which walks.
func TestWatchSparesWalks(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	b, reg := newBuilder(t, tt.root)
	walks := func() float64 { return counter(t, reg, "wwserver_build_tree_walks_total", "image") }
	for range 10 {
		if got, _ := imageFile(t, b, "etc/os-release"); got != "ID=debian\n" {
			t.Fatalf("os-release %q", got)
		}
	}
	if w := walks(); w != 1 {
		t.Fatalf("%v walks for 10 requests of an unchanged tree, want 1", w)
	}
	for i := range 20 {
		want := fmt.Sprintf("ID=debian%02d\n", i) // same size every time
		tt.file("images/debian/rootfs/etc/os-release", want, 0o644)
		if got, _ := imageFile(t, b, "etc/os-release"); got != want {
			t.Fatalf("edit %d: served %q, want %q", i, got, want)
		}
	}
	if w := walks(); w != 21 {
		t.Errorf("%v walks, want 21 (one per edit)", w)
	}
}

// TestWatchSeesEveryEdit: edits the watches must follow with care (new
// directories filled before their watch exists, renamed and moved
// directories, a replaced tree root) are all served on the next request.
func TestWatchSeesEveryEdit(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	b, _ := newBuilder(t, tt.root)
	rootfs := filepath.Join(tt.root, "images/debian/rootfs")
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	expect := func(step, rel, want string) {
		t.Helper()
		got, ok := imageFile(t, b, rel)
		if want == "" && ok {
			t.Fatalf("%s: %s still served", step, rel)
		}
		if want != "" && got != want {
			t.Fatalf("%s: %s served as %q (present %v), want %q", step, rel, got, ok, want)
		}
	}
	expect("start", "etc/os-release", "ID=debian\n")

	// A new directory and a file in it, made before any watch could be
	// added to it; then an edit inside it, which needs its watch.
	tt.file("images/debian/rootfs/opt/app/conf", "one\n", 0o644)
	expect("new dir", "opt/app/conf", "one\n")
	tt.file("images/debian/rootfs/opt/app/conf", "two\n", 0o644)
	expect("edit in new dir", "opt/app/conf", "two\n")

	// A directory renamed inside the tree, then edited under its new name.
	must(os.Rename(filepath.Join(rootfs, "opt"), filepath.Join(rootfs, "srv")))
	expect("renamed dir", "srv/app/conf", "two\n")
	expect("renamed dir", "opt/app/conf", "")
	tt.file("images/debian/rootfs/srv/app/conf", "three\n", 0o644)
	expect("edit in renamed dir", "srv/app/conf", "three\n")

	// Moved out of the tree, edited there, moved back in.
	must(os.Rename(filepath.Join(rootfs, "srv"), filepath.Join(outside, "srv")))
	expect("moved out", "srv/app/conf", "")
	must(os.WriteFile(filepath.Join(outside, "srv/app/conf"), []byte("four\n"), 0o644))
	must(os.Rename(filepath.Join(outside, "srv"), filepath.Join(rootfs, "var")))
	expect("moved in", "var/app/conf", "four\n")
	tt.file("images/debian/rootfs/var/app/conf", "five\n", 0o644)
	expect("edit in moved-in dir", "var/app/conf", "five\n")

	// The tree root replaced by a rename, then edited.
	tt.file("images/debian/rootfs.new/etc/os-release", "ID=new\n", 0o644)
	must(os.Rename(rootfs, filepath.Join(tt.root, "images/debian/rootfs.old")))
	must(os.Rename(filepath.Join(tt.root, "images/debian/rootfs.new"), rootfs))
	expect("root replaced", "etc/os-release", "ID=new\n")
	tt.file("images/debian/rootfs/etc/os-release", "ID=newer\n", 0o644)
	expect("edit in new root", "etc/os-release", "ID=newer\n")
	// The old root is not served any more: editing it changes nothing.
	tt.file("images/debian/rootfs.old/etc/os-release", "ID=old\n", 0o644)
	expect("old root edited", "etc/os-release", "ID=newer\n")

	// The image's parent directory renamed away and back.
	img := filepath.Join(tt.root, "images/debian")
	must(os.Rename(img, img+".tmp"))
	tt.file("images/debian.tmp/rootfs/etc/os-release", "ID=moved\n", 0o644)
	must(os.Rename(img+".tmp", img))
	expect("parent renamed", "etc/os-release", "ID=moved\n")

	// chmod, remove, symlink retargeted.
	must(os.Chmod(filepath.Join(rootfs, "etc/os-release"), 0o600))
	snap := snapshot(t, testNodesTOML)
	a, err := b.Image(bg, snap, snap.Nodes.ByName["n001"])
	must(err)
	if m := unpack(t, a)["etc/os-release"].hdr.Mode.Perm(); m != 0o600 {
		t.Fatalf("chmod not served: %o", m)
	}
	must(os.Remove(filepath.Join(rootfs, "etc/os-release")))
	expect("removed", "etc/os-release", "")
	tt.symlink("images/debian/rootfs/etc/link", "a")
	expect("symlink", "etc/link", "-> a")
	must(os.Remove(filepath.Join(rootfs, "etc/link")))
	tt.symlink("images/debian/rootfs/etc/link", "b")
	expect("symlink retargeted", "etc/link", "-> b")
}

// TestWatchReset: after the watches are dropped (what a queue overflow
// does) or closed, requests walk and stay fresh.
func TestWatchReset(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	b, reg := newBuilder(t, tt.root)
	walks := func() float64 { return counter(t, reg, "wwserver_build_tree_walks_total", "image") }
	imageFile(t, b, "etc/os-release")
	b.watch.resetEpoch(0, "test")
	if r := counter(t, reg, "wwserver_build_tree_watch_resets_total", ""); r != 1 {
		t.Errorf("resets %v", r)
	}
	tt.file("images/debian/rootfs/etc/os-release", "ID=after\n", 0o644)
	if got, _ := imageFile(t, b, "etc/os-release"); got != "ID=after\n" {
		t.Fatalf("after reset: %q", got)
	}
	imageFile(t, b, "etc/os-release")
	if w := walks(); w != 2 {
		t.Errorf("%v walks, want 2 (the first request and the one after the reset)", w)
	}
	b.Close()
	for i := range 3 {
		want := fmt.Sprintf("ID=closed%d\n", i)
		tt.file("images/debian/rootfs/etc/os-release", want, 0o644)
		if got, _ := imageFile(t, b, "etc/os-release"); got != want {
			t.Fatalf("closed builder: %q, want %q", got, want)
		}
	}
	if w := walks(); w != 5 {
		t.Errorf("%v walks, want 5 (a closed builder walks per request)", w)
	}
}

// TestWatchLimit: a tree whose directories cannot all be watched (the
// inotify watch limit) is walked on every request and stays fresh; its
// partial watches are given back; other trees stay watched.
func TestWatchLimit(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	b, reg := newBuilder(t, tt.root)
	var failed atomic.Int64
	b.watch.addWatch = func(w *fsnotify.Watcher, p string) error {
		if strings.HasSuffix(p, "/rootfs/etc") {
			failed.Add(1)
			return syscall.ENOSPC
		}
		return w.Add(p)
	}
	walks := func(tree string) float64 { return counter(t, reg, "wwserver_build_tree_walks_total", tree) }
	snap := snapshot(t, testNodesTOML)
	for i := range 3 {
		want := fmt.Sprintf("ID=limit%d\n", i)
		tt.file("images/debian/rootfs/etc/os-release", want, 0o644)
		if got, _ := imageFile(t, b, "etc/os-release"); got != want {
			t.Fatalf("unwatched tree: %q, want %q", got, want)
		}
		if _, err := b.RuntimeOverlay(bg, snap, snap.Nodes.ByName["n001"]); err != nil {
			t.Fatal(err)
		}
	}
	if w := walks("image"); w != 3 {
		t.Errorf("%v image walks, want 3 (one per request)", w)
	}
	if w := walks("overlay"); w != 1 {
		t.Errorf("%v overlay walks, want 1 (still watched)", w)
	}
	if n := failed.Load(); n != 1 {
		t.Errorf("%d failed adds, want 1 (retried only after watchRetry)", n)
	}
	b.watch.mu.Lock()
	defer b.watch.mu.Unlock()
	for d := range b.watch.dirs {
		if strings.Contains(d, "/rootfs") {
			t.Errorf("watch on %s kept", d)
		}
	}
}

// TestWatchPileUp: requests arriving while the first walk of a tree runs
// share the next check, which is a barrier, not a second walk.
func TestWatchPileUp(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	for i := range 2000 {
		tt.file(fmt.Sprintf("images/debian/rootfs/usr/share/d%02d/f%04d", i/100, i), "x", 0o644)
	}
	b, reg := newBuilder(t, tt.root)
	snap := snapshot(t, testNodesTOML)
	n := snap.Nodes.ByName["n001"]
	errs := make(chan error, 20)
	go func() {
		_, err := b.Image(bg, snap, n)
		errs <- err
	}()
	// The first walk is running: it has started watching the tree.
	waitFor(t, "the first walk to start", func() bool {
		b.watch.mu.Lock()
		defer b.watch.mu.Unlock()
		return len(b.watch.dirs) > 0
	})
	for range 19 {
		go func() {
			_, err := b.Image(bg, snap, n)
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if w := counter(t, reg, "wwserver_build_tree_walks_total", "image"); w != 1 {
		t.Errorf("%v image walks for 20 requests of an unchanged tree, want 1", w)
	}
}
