package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// paddedTar is a layer as GNU tar writes it: entries, the end marker, then
// zeros up to a 10 KiB record. A reader that stops at the end marker never
// reads the padding (nor, compressed, the gzip trailer).
func paddedTar(t testing.TB, entries []entry) []byte {
	t.Helper()
	b := tarBytes(t, entries)
	return append(b, make([]byte, 10240-len(b)%10240)...)
}

// secretLayer holds etc/secret = ORIGINAL, then enough incompressible data
// that the blob is read in many pieces.
func secretLayer(t *testing.T) []byte {
	t.Helper()
	noise := make([]byte, 300<<10)
	rand.Read(noise)
	return paddedTar(t, []entry{
		{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "etc/secret", body: "ORIGINAL"},
		{name: "usr/share/noise", body: string(noise)},
		{name: "boot/vmlinuz-6.1.0-test", body: "kernel"},
	})
}

// tamper replaces ORIGINAL with TAMPERED (same length) in data.
func tamper(t *testing.T, data []byte) []byte {
	t.Helper()
	i := bytes.Index(data, []byte("ORIGINAL"))
	if i < 0 {
		t.Fatal("no ORIGINAL to tamper with")
	}
	out := bytes.Clone(data)
	copy(out[i:], "TAMPERED")
	return out
}

// storedGzipImage is a one-layer image whose layer is gzip without
// compression (so tampering keeps the blob's length and readability).
func storedGzipImage(t testing.TB, layer []byte) (v1.Image, v1.Layer) {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer)), nil },
		tarball.WithCompressionLevel(gzip.NoCompression))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img, l
}

// checkRefused: the import failed on layer 1's digest, and nothing of it
// is left: no TAMPERED file, no images/NAME of a new name.
func checkRefused(t *testing.T, tree, name string, err error, layerName, what string) {
	t.Helper()
	if err == nil {
		data, _ := os.ReadFile(filepath.Join(tree, "images", name, "rootfs/etc/secret"))
		meta, _ := os.ReadFile(filepath.Join(tree, "images", name, MetaFile))
		t.Fatalf("tampered layer imported: etc/secret = %q, image.json:\n%s", data, meta)
	}
	t.Log(err)
	var de *DigestError
	if !errors.As(err, &de) || de.Layer != 1 || de.Name != layerName || de.What != what {
		t.Fatalf("err = %v, want a DigestError (%s) for layer 1 (%s)", err, what, layerName)
	}
	if !strings.Contains(err.Error(), "layer 1 ("+layerName+")") {
		t.Errorf("error does not name the layer: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tree, "images", name)); !os.IsNotExist(err) {
		t.Errorf("failed import of a new image left images/%s: %v", name, err)
	}
}

// A registry serving a same-length tampered layer for a digest-pinned
// reference: refused, the layer named.
func TestImportRefusesTamperedRegistryLayer(t *testing.T) {
	img, l := storedGzipImage(t, secretLayer(t))
	ld, _ := l.Digest()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var tampered []byte
	served := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tampered != nil && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
			served++
			w.Header().Set("Content-Length", strconv.Itoa(len(tampered)))
			w.Write(tampered)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/node/base"
	r, err := name.ParseReference(ref + ":1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	rc, _ := l.Compressed()
	orig, _ := io.ReadAll(rc)
	tampered = tamper(t, orig)
	if len(tampered) != len(orig) {
		t.Fatal("tampered blob has another length")
	}
	md, _ := img.Digest()
	tree := t.TempDir()
	_, err = importInto(t, tree, "node", "docker://"+ref+"@"+md.String())
	if served == 0 {
		t.Fatal("the tampered blob was never fetched")
	}
	checkRefused(t, tree, "node", err, ld.String(), "content")
}

// An OCI layout (directory and archive) whose layer blob was changed.
func TestImportRefusesTamperedOCILayer(t *testing.T) {
	img, l := storedGzipImage(t, secretLayer(t))
	ld, _ := l.Digest()
	work := t.TempDir()
	dir := filepath.Join(work, "oci")
	writeLayout(t, dir, img)
	blob := filepath.Join(dir, "blobs", ld.Algorithm, ld.Hex)
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blob, tamper(t, data), 0o644); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(work, "oci.tar")
	tarDir(t, dir, archive)
	for _, src := range []string{dir, archive} {
		t.Run(filepath.Base(src), func(t *testing.T) {
			tree := t.TempDir()
			_, err := importInto(t, tree, "node", src)
			checkRefused(t, tree, "node", err, ld.String(), "content")
		})
	}
}

// dockerSave writes a docker save archive by hand: layers (uncompressed
// tars) at the given paths, a config naming their diff_ids (of
// diffLayers, which may differ from the layers stored), manifest.json.
func dockerSave(t testing.TB, out string, paths []string, layers, diffLayers [][]byte) string {
	t.Helper()
	var diffIDs []string
	for _, l := range diffLayers {
		sum := sha256.Sum256(l)
		diffIDs = append(diffIDs, "sha256:"+hex.EncodeToString(sum[:]))
	}
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	sum := sha256.Sum256(cfg)
	cfgName := hex.EncodeToString(sum[:]) + ".json"
	manifest, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{"example.org/node:1"}, "Layers": paths}})
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	for i, p := range paths {
		if dir := filepath.Dir(p); dir != "." {
			tw.WriteHeader(&tar.Header{Name: dir + "/", Mode: 0o755, Typeflag: tar.TypeDir})
		}
		add(p, layers[i])
	}
	add(cfgName, cfg)
	add("manifest.json", manifest)
	add("repositories", []byte(`{"example.org/node":{"1":"x"}}`))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(sum[:])
}

// A docker save archive whose layer.tar does not match the config's diff_id.
func TestImportRefusesTamperedDockerLayer(t *testing.T) {
	base := secretLayer(t)
	hexID := strings.Repeat("ab", 32)
	src := filepath.Join(t.TempDir(), "docker.tar")
	dockerSave(t, src, []string{hexID + "/layer.tar"}, [][]byte{tamper(t, base)}, [][]byte{base})
	tree := t.TempDir()
	_, err := importInto(t, tree, "node", src)
	checkRefused(t, tree, "node", err, hexID+"/layer.tar", "uncompressed content (diff_id)")
}

// A docker save archive is recognised by its manifest.json, whatever its
// layer files are called; the same file with a flipped byte is refused.
func TestImportDockerArchiveAnyLayerNames(t *testing.T) {
	layers := [][]byte{
		tarBytes(t, []entry{{name: "boot/vmlinuz-6.1", body: "k"}, {name: "usr/sbin/init", body: "init", mode: 0o755}, {name: "sbin", typ: tar.TypeSymlink, link: "usr/sbin"}}),
		tarBytes(t, []entry{{name: "etc/os-release", body: "ID=test\n"}}),
	}
	src := filepath.Join(t.TempDir(), "docker.tar")
	id := dockerSave(t, src, []string{"layers/base.tar", "top-layer.tar"}, layers, layers)
	tree := t.TempDir()
	m, err := importInto(t, tree, "node", src)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != "docker-archive" || m.Layers != 2 || m.Digest != id || len(m.Warnings) != 0 {
		t.Errorf("meta %+v, want a docker-archive of 2 layers, image ID %s, no warnings", m, id)
	}
	if data, _ := os.ReadFile(filepath.Join(tree, "images/node/rootfs/etc/os-release")); string(data) != "ID=test\n" {
		t.Errorf("etc/os-release = %q", data)
	}
	if _, err := os.Stat(filepath.Join(tree, "images/node/rootfs/manifest.json")); err == nil {
		t.Error("the archive was imported as a root filesystem")
	}
}

// A rootfs tar.gz with a flipped byte (its CRC no longer matches) is
// refused: the gzip stream is read to its end.
func TestImportRootfsGzipCRC(t *testing.T) {
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.NoCompression)
	zw.Write(paddedTar(t, []entry{{name: "boot/vmlinuz-1", body: "k"}, {name: "etc/secret", body: "ORIGINAL"}}))
	zw.Close()
	src := filepath.Join(t.TempDir(), "rootfs.tar.gz")
	os.WriteFile(src, tamper(t, gz.Bytes()), 0o644)
	tree := t.TempDir()
	_, err := importInto(t, tree, "plain", src)
	if err == nil {
		data, _ := os.ReadFile(filepath.Join(tree, "images/plain/rootfs/etc/secret"))
		t.Fatalf("corrupt tar.gz imported: etc/secret = %q", data)
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "checksum") || !strings.Contains(err.Error(), "layer 1 (rootfs.tar.gz)") {
		t.Errorf("err = %v, want a gzip checksum error naming the file", err)
	}
}

// An image without a kernel or /sbin/init is imported with a warning that
// says which is missing; /sbin/init through symlinks counts.
func TestImportBootWarnings(t *testing.T) {
	cases := map[string]struct {
		entries []entry
		want    []string
	}{
		"neither":   {[]entry{{name: "etc/os-release", body: "x"}}, []string{"no kernel (boot/vmlinuz-*) and no /sbin/init"}},
		"no init":   {[]entry{{name: "boot/vmlinuz-6.1", body: "k"}}, []string{"has no /sbin/init"}},
		"no kernel": {[]entry{{name: "sbin/init", body: "i", mode: 0o755}}, []string{"has no kernel"}},
		"merged usr": {[]entry{
			{name: "boot/vmlinuz-6.1", body: "k"},
			{name: "sbin", typ: tar.TypeSymlink, link: "usr/sbin"},
			{name: "usr/sbin/init", typ: tar.TypeSymlink, link: "/lib/systemd/systemd"},
			{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
			{name: "usr/lib/systemd/systemd", body: "systemd", mode: 0o755},
		}, nil},
		// A FIFO where boot/ should be once blocked the kernel lookup forever.
		"fifo boot":     {[]entry{{name: "boot", typ: tar.TypeFifo, mode: 0o644}, {name: "sbin/init", body: "i", mode: 0o755}}, []string{"has no kernel"}},
		"dangling init": {[]entry{{name: "boot/vmlinuz-6.1", body: "k"}, {name: "sbin/init", typ: tar.TypeSymlink, link: "/nowhere"}}, []string{"no /sbin/init"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "rootfs.tar")
			os.WriteFile(src, tarBytes(t, c.entries), 0o644)
			m, err := importInto(t, t.TempDir(), "img", src)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(m.Warnings, "\n")
			if (len(c.want) == 0) != (got == "") {
				t.Errorf("warnings %q, want %q", got, c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("warnings %q lack %q", got, w)
				}
			}
		})
	}
}

// A nested index without the platform asked for says what it offers.
func TestImportNestedIndexPlatformError(t *testing.T) {
	img := testImage(t, testLayers(t))
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.Architecture = "arm64"
	arm, _ := mutate.ConfigFile(img, cf)
	inner := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: arm,
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	dir := filepath.Join(t.TempDir(), "oci")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(inner); err != nil {
		t.Fatal(err)
	}
	_, err = Import(t.Context(), Options{Tree: t.TempDir(), Name: "img", Source: dir, Platform: "linux/amd64"})
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "offers linux/arm64") || strings.Contains(err.Error(), "[]") {
		t.Errorf("err = %v, want it to say the index offers linux/arm64", err)
	}
}

func TestDigestErrorMessage(t *testing.T) {
	e := &DigestError{Layer: 2, Name: "sha256:aa", What: "content", Want: "sha256:aa", Got: "sha256:bb"}
	if got := e.Error(); got != "layer 2 (sha256:aa): content does not match its digest sha256:aa (got sha256:bb): refused" {
		t.Error(got)
	}
}

// A docker save archive read in place, plain and compressed: layers stored
// out of order, bigger than what the scan keeps in memory, one of them a
// symlink to another (old docker save links duplicate layers).
func TestImportDockerArchiveOrderAndLinks(t *testing.T) {
	big := make([]byte, 2<<20)
	rand.Read(big)
	l1 := tarBytes(t, []entry{{name: "boot/vmlinuz-1", body: "k"}, {name: "data/big", body: string(big)}, {name: "etc/v", body: "1"}})
	l2 := tarBytes(t, []entry{{name: "etc/v", body: "2"}, {name: "sbin/init", body: "i", mode: 0o755}})
	diff := func(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diff(l1), diff(l2), diff(l1)}}})
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "Layers": []string{"one/layer.tar", "two/layer.tar", "dup/layer.tar"}}})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, data []byte) {
		h.Size = int64(len(data))
		if h.Typeflag == 0 {
			h.Typeflag, h.Mode = tar.TypeReg, 0o644
		}
		tw.WriteHeader(h)
		tw.Write(data)
	}
	add(&tar.Header{Name: "manifest.json"}, manifest)
	add(&tar.Header{Name: "two/layer.tar"}, l2)
	add(&tar.Header{Name: "dup/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../one/layer.tar"}, nil)
	add(&tar.Header{Name: "one/layer.tar"}, l1)
	add(&tar.Header{Name: "config.json"}, cfg)
	tw.Close()
	dir := t.TempDir()
	plain := filepath.Join(dir, "save.tar")
	os.WriteFile(plain, buf.Bytes(), 0o644)
	gz := filepath.Join(dir, "save.tar.gz")
	gzipFile(t, plain, gz)
	for _, src := range []string{plain, gz} {
		t.Run(filepath.Base(src), func(t *testing.T) {
			tree := t.TempDir()
			m, err := importInto(t, tree, "node", src)
			if err != nil {
				t.Fatal(err)
			}
			if m.Kind != "docker-archive" || m.Layers != 3 || len(m.Warnings) != 0 {
				t.Errorf("meta %+v", m)
			}
			rootfs := filepath.Join(tree, "images/node/rootfs")
			if data, _ := os.ReadFile(filepath.Join(rootfs, "etc/v")); string(data) != "1" {
				t.Errorf("etc/v = %q, want the last layer's (1)", data)
			}
			if data, _ := os.ReadFile(filepath.Join(rootfs, "data/big")); !bytes.Equal(data, big) {
				t.Errorf("data/big differs (%d bytes)", len(data))
			}
		})
	}
}
