package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// fuzzImport imports src into sandbox/tree and checks the invariants of
// any import: no panic, nothing created or changed outside the tree,
// nothing left of a failed import, and bounded output.
func fuzzImport(t *testing.T, sandbox, src string) {
	t.Helper()
	outside := filepath.Join(sandbox, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	sentinel := filepath.Join(outside, "sentinel")
	if err := os.WriteFile(sentinel, []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(sandbox, "tree")
	m, err := Import(context.Background(), Options{Tree: tree, Name: "f", Source: src, MaxSize: 1 << 20, Reserve: NoReserve})
	if data, rerr := os.ReadFile(sentinel); rerr != nil || string(data) != "untouched" {
		t.Fatalf("sentinel outside the tree changed: %q %v", data, rerr)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Fatalf("something landed outside the tree: %v", ents)
	}
	if ents, _ := os.ReadDir(sandbox); len(ents) != 3 { // src, outside, tree
		t.Fatalf("something landed next to the tree: %v", ents)
	}
	if err != nil {
		if _, serr := os.Stat(filepath.Join(tree, "images", "f")); !errors.Is(serr, os.ErrNotExist) {
			t.Fatalf("failed import (%v) left images/f: %v", err, serr)
		}
		return
	}
	if m.Bytes > 1<<20 {
		t.Fatalf("wrote %d bytes past --max-size", m.Bytes)
	}
}

// fuzzDir is a sandbox in memory when it can be (/dev/shm): an import
// makes, syncs and removes directories, which on a disk makes each run
// slow enough that the fuzzer spends its time minimizing.
func fuzzDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "wwimage-fuzz-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// fuzzSeeds are archives of every kind import reads: rootfs tars (with
// PAX records, xattrs, whiteouts, links), OCI and docker archives.
func fuzzSeeds(f *testing.F) [][]byte {
	layers := testLayers(f)
	var seeds [][]byte
	seeds = append(seeds, layers[0], layers[1], gzipBytes(layers[0]))
	img := testImage(f, layers)
	dir := f.TempDir()
	writeLayout(f, filepath.Join(dir, "oci"), img)
	tarDir(f, filepath.Join(dir, "oci"), filepath.Join(dir, "oci.tar"))
	ref, _ := name.NewTag("example.org/node:1")
	if err := tarball.WriteToFile(filepath.Join(dir, "docker.tar"), ref, img); err != nil {
		f.Fatal(err)
	}
	dockerSave(f, filepath.Join(dir, "save.tar"), []string{"abc/layer.tar", "def.tar"}, layers, layers)
	for _, n := range []string{"oci.tar", "docker.tar", "save.tar"} {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, data)
	}
	return seeds
}

// FuzzImportArchive feeds arbitrary files to image import: tar headers,
// PAX records, and (inside archives) manifest.json, index.json, configs.
func FuzzImportArchive(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sandbox := fuzzDir(t)
		src := filepath.Join(sandbox, "src")
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		fuzzImport(t, sandbox, src)
	})
}

// FuzzImportMetadata fuzzes the JSON an archive is read by (which a
// byte-level mutation of a whole archive rarely keeps a valid tar):
// manifest.json and index.json around real blobs.
func FuzzImportMetadata(f *testing.F) {
	seeds := fuzzSeeds(f)
	// The OCI archive's and the docker archive's files, by name.
	files := map[string][]byte{}
	for _, s := range seeds[3:] {
		tr := tar.NewReader(bytes.NewReader(s))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			var b bytes.Buffer
			b.ReadFrom(tr)
			if h.Typeflag == tar.TypeReg {
				files[cleanArchiveName(h.Name)] = b.Bytes()
			}
		}
	}
	f.Add(files["manifest.json"], files["index.json"])
	f.Add([]byte(`[{"Config":"blobs/../index.json","Layers":["manifest.json","x","x"]}]`), []byte(`{"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:`+string(bytes.Repeat([]byte("0"), 64))+`"}]}`))
	f.Fuzz(func(t *testing.T, manifest, index []byte) {
		sandbox := fuzzDir(t)
		src := filepath.Join(sandbox, "src")
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		add := func(n string, data []byte) {
			tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
			tw.Write(data)
		}
		for _, n := range slices.Sorted(maps.Keys(files)) {
			if n != "manifest.json" && n != "index.json" {
				add(n, files[n])
			}
		}
		add("manifest.json", manifest)
		if len(index) > 0 {
			add("index.json", index)
		}
		tw.Close()
		if err := os.WriteFile(src, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		fuzzImport(t, sandbox, src)
	})
}
