package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/daemon"
)

// rootfsTarGz is a tar.gz of one file of size zero bytes (it compresses
// to almost nothing) and a kernel.
func rootfsTarGz(t *testing.T, size int) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, n := range map[string]int{"boot/vmlinuz-6.1": 1, "data/big": size} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg})
		tw.Write(make([]byte, n))
	}
	tw.Close()
	zw.Close()
	p := filepath.Join(t.TempDir(), "rootfs.tar.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// image import --max-size and --reserve; warnings reach stderr.
func TestImageImportSizeFlags(t *testing.T) {
	dir := initTree(t)
	src := rootfsTarGz(t, 50<<20)
	var out bytes.Buffer
	if code := run([]string{"image", "import", src, "big", "--root", dir, "-q", "--max-size", "10MB"}, &out, &out); code != 1 ||
		!strings.Contains(out.String(), "larger than --max-size 9.5 MiB") {
		t.Fatalf("import over --max-size: exit %d: %s", code, out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "images", "big")); !os.IsNotExist(err) {
		t.Errorf("refused import left images/big: %v", err)
	}
	for _, bad := range [][]string{{"--max-size", "lots"}, {"--reserve", "-1"}} {
		out.Reset()
		if code := run(append([]string{"image", "import", src, "big", "--root", dir}, bad...), &out, &out); code != 1 || !strings.Contains(out.String(), bad[0]) {
			t.Errorf("%v: exit %d: %s", bad, code, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"image", "import", src, "big", "--root", dir, "-q", "--max-size", "60MiB", "--reserve", "0"}, &out, &out); code != 0 {
		t.Fatalf("import: exit %d: %s", code, out.String())
	}
	if !strings.Contains(out.String(), "wwserver: warning: image big has no /sbin/init") {
		t.Errorf("no warning about /sbin/init:\n%s", out.String())
	}
}

// check warns (exit 0) when images/ is open to every local user and about
// what killed imports left; serve's start shuts images/ and removes them.
func TestCheckImagesPermsAndLeftovers(t *testing.T) {
	dir := initTree(t)
	replacePlaceholderKernel(t, dir) // check refuses init's placeholder image
	imgs := filepath.Join(dir, "images")
	if fi, err := os.Stat(imgs); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("init made images/ %v %v, want 0700", fi, err)
	}
	var out bytes.Buffer
	if code := run([]string{"check", "--root", dir}, &out, &out); code != 0 || strings.Contains(out.String(), "warning") {
		t.Fatalf("check of a fresh tree: exit %d: %s", code, out.String())
	}
	// The test's temporary parent is 0700; open the path as /var/lib is.
	if err := os.Chmod(filepath.Dir(filepath.Dir(dir)), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(imgs, 0o755)
	left := filepath.Join(imgs, "default", ".import-123")
	os.MkdirAll(filepath.Join(left, "rootfs"), 0o755)
	os.WriteFile(filepath.Join(left, "owner"), []byte("999999999 1\n"), 0o600)
	out.Reset()
	if code := run([]string{"check", "--root", dir}, &out, &out); code != 0 {
		t.Errorf("check exit %d, want 0 (warnings only): %s", code, out.String())
	}
	for _, want := range []string{
		"warning: " + imgs + " (mode 0755) and no parent directory is root-only",
		"warning: images/default/.import-123: left by an image import that was killed (pid 999999999 is gone)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	var logs bytes.Buffer
	daemon.PrepareImages(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if fi, _ := os.Stat(imgs); fi.Mode().Perm() != 0o700 {
		t.Errorf("serve start left images/ %o", fi.Mode().Perm())
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("serve start left %s: %v", left, err)
	}
	if !strings.Contains(logs.String(), "made it root-only") || !strings.Contains(logs.String(), "images/default/.import-123") {
		t.Errorf("serve start logs:\n%s", logs.String())
	}
	out.Reset()
	if code := run([]string{"check", "--root", dir}, &out, &out); code != 0 || strings.Contains(out.String(), "warning") {
		t.Errorf("check after serve start: exit %d: %s", code, out.String())
	}
}
