package bootstrap

import (
	"os"
	"path/filepath"
	"testing"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if len(content) > 2 && content[:2] == "->" {
			if err := os.Symlink(content[2:], p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if content == "/" {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOverlayTree: the overlays win over the image; directories merge, also
// through the image's merged-/usr symlinks (relative or absolute); nothing
// leaves the destination.
func TestOverlayTree(t *testing.T) {
	src, dst, outside := t.TempDir(), t.TempDir(), t.TempDir()
	writeTree(t, dst, map[string]string{
		"etc/hosts":            "image hosts",
		"etc/passwd":           "image passwd",
		"etc/keep":             "image only",
		"usr/lib/modules/x":    "image module",
		"usr/sbin/init":        "image init",
		"lib":                  "->usr/lib",
		"sbin":                 "->/usr/sbin",
		"var/run":              "->" + outside,
		"srv":                  "->/usr/lib", // absolute: taken inside dst
		"opt/dir-to-replace/f": "x",
		"etc/link-to-replace":  "->hosts",
	})
	writeTree(t, src, map[string]string{
		"etc/hosts":                  "overlay hosts",
		"etc/wwclient/wwclient.toml": "node = \"n1\"",
		"lib/modules/x":              "overlay module",
		"sbin/wwclient":              "agent",
		"init":                       "->usr/sbin/wwclient",
		"var/run/planted":            "must not leave dst",
		"srv/abs":                    "through an absolute link",
		"opt/dir-to-replace":         "now a file",
		"etc/link-to-replace":        "a file now",
	})
	if err := os.Chmod(filepath.Join(src, "etc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := OverlayTree(src, dst); err != nil {
		t.Fatal(err)
	}
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(dst, rel))
		if err != nil {
			return "ERR " + err.Error()
		}
		return string(b)
	}
	for rel, want := range map[string]string{
		"etc/hosts":                  "overlay hosts",
		"etc/keep":                   "image only",
		"etc/passwd":                 "image passwd",
		"etc/wwclient/wwclient.toml": "node = \"n1\"",
		"usr/lib/modules/x":          "overlay module", // through lib -> usr/lib
		"usr/sbin/wwclient":          "agent",          // through sbin -> /usr/sbin (chroot-style)
		"usr/sbin/init":              "image init",
		"usr/lib/abs":                "through an absolute link",
		"opt/dir-to-replace":         "now a file",
		"etc/link-to-replace":        "a file now",
	} {
		if got := read(rel); got != want {
			t.Errorf("%s: %q, want %q", rel, got, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(dst, "lib")); err != nil || l != "usr/lib" {
		t.Errorf("lib: %q %v (the image's symlink must stay)", l, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "init")); err != nil || l != "usr/sbin/wwclient" {
		t.Errorf("init: %q %v", l, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "etc")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("etc: mode not the overlay's: %v %v", fi.Mode(), err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("wrote outside the destination: %v", ents)
	}
	// var/run pointed outside, to a directory dst does not have (resolved
	// inside dst): the overlay's directory replaced the dangling link.
	if got := read("var/run/planted"); got != "must not leave dst" {
		t.Errorf("var/run/planted: %q", got)
	}
}

// TestOverlayTreeSkipsDestination: dst inside src (the initramfs and
// /newroot) is not copied into itself.
func TestOverlayTreeSkipsDestination(t *testing.T) {
	src := t.TempDir()
	dst := filepath.Join(src, "newroot")
	writeTree(t, src, map[string]string{"a": "A", "newroot/image-file": "I"})
	if err := OverlayTree(src, dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "a")); string(b) != "A" {
		t.Errorf("a: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dst, "newroot")); err == nil {
		t.Error("copied the destination into itself")
	}
}

func TestOverlayTreeSymlinkLoop(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeTree(t, dst, map[string]string{"a": "->b", "b": "->a"})
	writeTree(t, src, map[string]string{"a/f": "x"})
	if err := OverlayTree(src, dst); err != nil {
		t.Fatal(err) // the loop is replaced by the overlay's directory
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "a/f")); string(b) != "x" {
		t.Errorf("a/f: %q", b)
	}
}
