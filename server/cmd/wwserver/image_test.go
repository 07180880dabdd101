package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
