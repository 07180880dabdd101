package image

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// openTree is a tree directory every user can traverse to (t.TempDir's
// parent is 0700, which would hide the tree whatever import does).
func openTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// asNobody runs argv as uid/gid 65534 and returns its error.
func asNobody(argv ...string) ([]byte, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, NoSetGroups: true}}
	return cmd.CombinedOutput()
}

// No local user but root can reach an image's setuid-root files: images/
// is 0700, an existing open one is shut, and check's test agrees.
func TestImagesRootOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (runs a command as uid 65534)")
	}
	tree := openTree(t)
	// An open images/ from before is shut by the import.
	if err := os.Mkdir(filepath.Join(tree, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(tree, "images"), 0o755)
	if why, err := ImagesExposure(tree); err != nil || !strings.Contains(why, "mode 0755") {
		t.Fatalf("ImagesExposure of an open images/: %q %v", why, err)
	}
	src := filepath.Join(t.TempDir(), "rootfs.tar")
	os.WriteFile(src, testLayers(t)[0], 0o644)
	if _, err := importInto(t, tree, "node", src); err != nil {
		t.Fatal(err)
	}
	su := filepath.Join(tree, "images/node/rootfs/usr/bin/su")
	if fi, err := os.Stat(su); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("su: %v %v", fi, err)
	}
	if out, err := exec.Command("stat", su).CombinedOutput(); err != nil {
		t.Fatalf("root cannot stat %s: %v %s", su, err, out)
	}
	for _, argv := range [][]string{
		{"stat", su},
		{"stat", filepath.Join(tree, "images/node/rootfs")},
		{"ls", filepath.Join(tree, "images")},
		{su},
	} {
		if out, err := asNobody(argv...); err == nil {
			t.Errorf("uid 65534 ran %v: %s", argv, out)
		}
	}
	if out, err := asNobody("stat", tree); err != nil {
		t.Fatalf("uid 65534 cannot even reach the tree (the test proves nothing): %v %s", err, out)
	}
	fi, _ := os.Stat(filepath.Join(tree, "images"))
	if fi.Mode().Perm() != ImagesDirMode {
		t.Errorf("images/ mode %o", fi.Mode().Perm())
	}
	if why, err := ImagesExposure(tree); why != "" || err != nil {
		t.Errorf("ImagesExposure after import: %q %v", why, err)
	}
	// A new tree: images/ is made 0700 whatever the umask.
	tree2 := openTree(t)
	old := syscall.Umask(0)
	_, err := importInto(t, tree2, "node", src)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(tree2, "images")); fi.Mode().Perm() != ImagesDirMode {
		t.Errorf("new images/ mode %o", fi.Mode().Perm())
	}
	// A root-only parent hides an open images/ too.
	parent := t.TempDir()
	os.Chmod(parent, 0o700)
	closed := filepath.Join(parent, "tree")
	os.MkdirAll(filepath.Join(closed, "images"), 0o755)
	if why, err := ImagesExposure(closed); why != "" || err != nil {
		t.Errorf("ImagesExposure under a 0700 parent: %q %v", why, err)
	}
}
