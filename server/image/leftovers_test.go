package image

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// What killed imports and deletes leave is listed and removed, unless its
// image is locked (an import or exec runs); a failed import of a new name
// leaves no directory.
func TestLeftovers(t *testing.T) {
	tree := t.TempDir()
	imgs := filepath.Join(tree, "images")
	mk := func(p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(imgs, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// a: a killed import (its pid is gone); b: an import that runs (it
	// holds the lock, its owner file is this process); c: only a lock
	// file (a killed import of a new name); .d.deleted: a killed delete.
	mk("a/rootfs")
	mk("a/.import-1/rootfs")
	os.WriteFile(filepath.Join(imgs, "a/.import-1/owner"), []byte("999999999 5\n"), 0o600)
	mk("b/.import-2/rootfs")
	if err := writeOwner(filepath.Join(imgs, "b/.import-2")); err != nil {
		t.Fatal(err)
	}
	lock, err := lockImage(filepath.Join(imgs, "b"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	mk("c")
	os.WriteFile(filepath.Join(imgs, "c", lockFile), nil, 0o600)
	mk(".d.deleted/rootfs")
	os.WriteFile(filepath.Join(imgs, ".d.deleted", lockFile), nil, 0o600)

	left, err := Leftovers(tree)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range left {
		got = append(got, l.String())
	}
	want := []string{
		"images/.d.deleted: left by an image delete that was interrupted; removed at the next image import or serve start",
		"images/a/.import-1: left by an image import that was killed (pid 999999999 is gone); removed at the next image import or serve start",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Leftovers:\n%q\nwant\n%q", got, want)
	}

	// An import of another image cleans up.
	src := filepath.Join(t.TempDir(), "rootfs.tar")
	os.WriteFile(src, tarBytes(t, []entry{{name: "boot/vmlinuz-1", body: "k"}, {name: "sbin/init", body: "i"}}), 0o644)
	if _, err := importInto(t, tree, "e", src); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		"a/rootfs": true, "a/.import-1": false, "b/.import-2": true, "c": false, ".d.deleted": false, "e/rootfs": true,
	} {
		if _, err := os.Stat(filepath.Join(imgs, p)); (err == nil) != want {
			t.Errorf("images/%s: exists=%v, want %v", p, err == nil, want)
		}
	}
	lock.Close()
	removed, err := CleanLeftovers(tree)
	if err != nil || fmt.Sprint(removed) != "[images/b/.import-2]" {
		t.Errorf("CleanLeftovers after the lock is released: %v %v", removed, err)
	}
}

// A failed import of an existing image keeps it; of a new name leaves
// nothing, lock file included.
func TestFailedImportLeavesNoDirectory(t *testing.T) {
	tree := t.TempDir()
	bad := filepath.Join(t.TempDir(), "bad.tar")
	os.WriteFile(bad, []byte("not a tar at all, not even close to one............................................................"), 0o644)
	if _, err := importInto(t, tree, "new", bad); err == nil {
		t.Fatal("import of garbage succeeded")
	}
	if _, err := os.Stat(filepath.Join(tree, "images", "new")); !os.IsNotExist(err) {
		t.Errorf("images/new left: %v", err)
	}
	good := filepath.Join(t.TempDir(), "good.tar")
	os.WriteFile(good, tarBytes(t, []entry{{name: "etc/os-release", body: "good"}}), 0o644)
	if _, err := importInto(t, tree, "old", good); err != nil {
		t.Fatal(err)
	}
	if _, err := importInto(t, tree, "old", bad); err == nil {
		t.Fatal("import of garbage succeeded")
	}
	if data, _ := os.ReadFile(filepath.Join(tree, "images/old/rootfs/etc/os-release")); string(data) != "good" {
		t.Errorf("old image after a failed import: %q", data)
	}
}
