package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// layerSource is one layer to apply, in order. Its stored bytes must hash
// to digest and, uncompressed, to diffID (each when set).
type layerSource struct {
	name   string  // for messages: the digest, or the file name
	digest v1.Hash // of the stored (possibly compressed) bytes; zero: not checked
	diffID v1.Hash // of the uncompressed tar; zero: not checked
	size   int64   // stored bytes; 0 when unknown
	open   func() (io.ReadCloser, error)
}

// source is an opened SOURCE: its layers, bottom first.
type source struct {
	kind   string // "registry", "oci-layout", "oci-archive", "docker-archive", "rootfs-tar"
	digest string // manifest digest (docker archive: the image ID, its config's digest); "" for a rootfs tar
	layers []layerSource
	closer io.Closer
	// arch is the image config's architecture ("" when it has none, e.g.
	// a rootfs tar).
	arch string
}

func (s *source) Close() error {
	if s.closer != nil {
		return s.closer.Close()
	}
	return nil
}

// maxJSON bounds what is read of an index, manifest or config.
const maxJSON = 8 << 20

// openSource recognises SOURCE. Nothing is unpacked: archives are read in
// place, layers streamed.
func openSource(ctx context.Context, src string, platform *v1.Platform) (*source, error) {
	if ref, ok := strings.CutPrefix(src, "docker://"); ok {
		return fromRegistry(ctx, ref, platform)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(src, "index.json")); err != nil {
			return nil, fmt.Errorf("%s is a directory but not an OCI image layout (no index.json)", src)
		}
		root, err := os.OpenRoot(src)
		if err != nil {
			return nil, err
		}
		s, err := fromOCI("oci-layout", dirFiles{root}, platform)
		if err != nil {
			root.Close()
			return nil, fmt.Errorf("OCI layout %s: %w", src, err)
		}
		s.closer = root
		return s, nil
	}
	kind, a, err := scanArchive(src)
	if err != nil {
		return nil, err
	}
	var s *source
	switch kind {
	case "rootfs-tar":
		a.Close()
		return &source{kind: kind, layers: []layerSource{{
			name: filepath.Base(src), size: fi.Size(),
			open: func() (io.ReadCloser, error) { return os.Open(src) },
		}}}, nil
	case "oci-archive":
		s, err = fromOCI(kind, a, platform)
	default:
		s, err = fromDockerArchive(a)
	}
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("%s: %s: %w", src, kind, err)
	}
	s.closer = a
	return s, nil
}

// fromRegistry pulls the manifest for platform; blobs are fetched as the
// layers are applied.
func fromRegistry(ctx context.Context, ref string, platform *v1.Platform) (*source, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("registry reference %q: %w", ref, err)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithPlatform(*platform),
		remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	// One puller: the manifest and every blob share its authentication.
	puller, err := remote.NewPuller(opts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	opts = append(opts, remote.Reuse(puller))
	img, err := remote.Image(r, opts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("pull %s: manifest: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("pull %s: manifest digest: %w", ref, err)
	}
	if err := checkDigest(raw, d); err != nil {
		return nil, fmt.Errorf("pull %s: manifest: %w", ref, err)
	}
	blob := func(h v1.Hash) (io.ReadCloser, error) {
		l, err := remote.Layer(r.Context().Digest(h.String()), opts...)
		if err != nil {
			return nil, err
		}
		return l.Compressed()
	}
	s, err := fromManifest("registry", d, raw, blob)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return s, nil
}

// layoutFiles are the files of an OCI image layout: a directory or an archive.
type layoutFiles interface {
	open(name string) (io.ReadCloser, error)
}

// dirFiles opens files of a layout directory; nothing resolves outside it.
type dirFiles struct{ root *os.Root }

func (d dirFiles) open(name string) (io.ReadCloser, error) {
	f, err := d.root.Open(name)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	return f, nil
}

var hexDigest = regexp.MustCompile(`^[a-f0-9]{64}$`)

// blobPath is where a layout keeps blob h.
func blobPath(h v1.Hash) (string, error) {
	if h.Algorithm != "sha256" || !hexDigest.MatchString(h.Hex) {
		return "", fmt.Errorf("digest %q: only sha256 digests are supported", h)
	}
	return "blobs/" + h.Algorithm + "/" + h.Hex, nil
}

func layoutBlob(files layoutFiles) func(v1.Hash) (io.ReadCloser, error) {
	return func(h v1.Hash) (io.ReadCloser, error) {
		p, err := blobPath(h)
		if err != nil {
			return nil, err
		}
		return files.open(p)
	}
}

// fromOCI picks the image for platform from an OCI layout's index (nested
// indexes are followed; an image without a platform matches). Every blob
// read is checked against its digest.
func fromOCI(kind string, files layoutFiles, platform *v1.Platform) (*source, error) {
	raw, err := readJSON(files.open("index.json"))
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	blob := layoutBlob(files)
	d, raw, err := pickManifest(blob, idx, "index.json", platform, 0)
	if err != nil {
		return nil, err
	}
	return fromManifest(kind, d, raw, blob)
}

// noPlatformError is an index without an image for the platform asked for.
type noPlatformError struct {
	platform string
	offered  []string // platforms the index (and its nested indexes) offer
	entries  int
}

func (e *noPlatformError) Error() string {
	if len(e.offered) == 0 {
		return fmt.Sprintf("no image for platform %s: the index lists no image manifest (%d entries, none an image or an index of images)", e.platform, e.entries)
	}
	return fmt.Sprintf("no image for platform %s: the index offers %s (--platform picks one)", e.platform, strings.Join(e.offered, ", "))
}

// pickManifest returns the digest and the (verified) manifest of the
// first image in idx for platform.
func pickManifest(blob func(v1.Hash) (io.ReadCloser, error), idx *v1.IndexManifest, where string, platform *v1.Platform, depth int) (v1.Hash, []byte, error) {
	if depth > 4 {
		return v1.Hash{}, nil, fmt.Errorf("%s: indexes nested too deep", where)
	}
	np := &noPlatformError{platform: platform.String(), entries: len(idx.Manifests)}
	for _, d := range idx.Manifests {
		if d.Platform != nil && !d.Platform.Satisfies(*platform) {
			if s := d.Platform.String(); (d.MediaType.IsImage() || d.MediaType.IsIndex()) && s != "unknown/unknown" {
				np.offered = appendNew(np.offered, s)
			}
			continue
		}
		if !d.MediaType.IsImage() && !d.MediaType.IsIndex() {
			continue
		}
		raw, err := readBlob(blob, d.Digest)
		if err != nil {
			return v1.Hash{}, nil, fmt.Errorf("%s: manifest %s: %w", where, d.Digest, err)
		}
		if d.MediaType.IsImage() {
			return d.Digest, raw, nil
		}
		child, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return v1.Hash{}, nil, fmt.Errorf("%s: nested index %s: %w", where, d.Digest, err)
		}
		h, raw, err := pickManifest(blob, child, "nested index "+d.Digest.String(), platform, depth+1)
		var cnp *noPlatformError
		if errors.As(err, &cnp) {
			for _, o := range cnp.offered {
				np.offered = appendNew(np.offered, o)
			}
			continue
		}
		return h, raw, err
	}
	return v1.Hash{}, nil, np
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// fromManifest reads an image manifest's config (checked against its
// digest) and lists its layers with their digests and diff_ids.
func fromManifest(kind string, digest v1.Hash, raw []byte, blob func(v1.Hash) (io.ReadCloser, error)) (*source, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", digest, err)
	}
	if m.MediaType != "" && !m.MediaType.IsImage() {
		return nil, fmt.Errorf("manifest %s: media type %s is not an image manifest", digest, m.MediaType)
	}
	cfgRaw, err := readBlob(blob, m.Config.Digest)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cfgRaw))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("config %s lists %d diff_ids for the manifest's %d layers", m.Config.Digest, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	s := &source{kind: kind, digest: digest.String(), arch: cfg.Architecture}
	for i, l := range m.Layers {
		if l.MediaType != "" && !l.MediaType.IsLayer() {
			return nil, fmt.Errorf("layer %d (%s): media type %s is not a layer this import can read", i+1, l.Digest, l.MediaType)
		}
		if _, err := blobPath(l.Digest); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
		d := l.Digest
		s.layers = append(s.layers, layerSource{name: d.String(), digest: d, diffID: cfg.RootFS.DiffIDs[i], size: l.Size,
			open: func() (io.ReadCloser, error) { return blob(d) }})
	}
	return s, nil
}

// blobName matches archive paths that name their content's digest.
var blobName = regexp.MustCompile(`^blobs/sha256/([a-f0-9]{64})$`)

// fromDockerArchive reads a docker/podman save archive: manifest.json
// names the config and the layers. Layers are checked against the
// config's diff_ids, the config against its file name when that is a
// digest, and blobs/sha256/HEX files against HEX.
func fromDockerArchive(a *tarArchive) (*source, error) {
	raw, err := readJSON(a.open("manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	var m tarball.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	if len(m) != 1 {
		var tags []string
		for _, d := range m {
			tags = append(tags, strings.Join(d.RepoTags, ","))
		}
		return nil, fmt.Errorf("manifest.json lists %d images (%s): save one image per archive", len(m), strings.Join(tags, "; "))
	}
	d := m[0]
	if d.Config == "" {
		return nil, errors.New("manifest.json: no Config")
	}
	cfgRaw, err := readJSON(a.open(d.Config))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", d.Config, err)
	}
	sum := sha256.Sum256(cfgRaw)
	id := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if want, ok := configNameDigest(d.Config); ok && want != id.Hex {
		return nil, &DigestError{Name: d.Config, What: "config", Want: "sha256:" + want, Got: id.String()}
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cfgRaw))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", d.Config, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(d.Layers) {
		return nil, fmt.Errorf("config %s lists %d diff_ids for manifest.json's %d layers", d.Config, len(cfg.RootFS.DiffIDs), len(d.Layers))
	}
	s := &source{kind: "docker-archive", digest: id.String(), arch: cfg.Architecture}
	for i, p := range d.Layers {
		l := layerSource{name: p, diffID: cfg.RootFS.DiffIDs[i], open: func() (io.ReadCloser, error) { return a.open(p) }}
		if e, err := a.resolve(p); err == nil {
			l.size = e.size
		}
		if sm := blobName.FindStringSubmatch(cleanArchiveName(p)); sm != nil {
			l.digest = v1.Hash{Algorithm: "sha256", Hex: sm[1]}
		}
		s.layers = append(s.layers, l)
	}
	return s, nil
}

// configNameDigest is the digest a docker archive's config file name
// carries: HEX.json (docker), sha256:HEX (go-containerregistry),
// blobs/sha256/HEX (docker 25+).
func configNameDigest(p string) (string, bool) {
	n := cleanArchiveName(p)
	if sm := blobName.FindStringSubmatch(n); sm != nil {
		return sm[1], true
	}
	n = strings.TrimSuffix(strings.TrimPrefix(n, "sha256:"), ".json")
	return n, hexDigest.MatchString(n)
}

// readJSON reads a metadata file of at most maxJSON bytes.
func readJSON(rc io.ReadCloser, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxJSON+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxJSON {
		return nil, fmt.Errorf("larger than %d MiB", maxJSON>>20)
	}
	return data, nil
}

// readBlob reads blob h (at most maxJSON bytes) and checks its digest.
func readBlob(blob func(v1.Hash) (io.ReadCloser, error), h v1.Hash) ([]byte, error) {
	if _, err := blobPath(h); err != nil {
		return nil, err
	}
	data, err := readJSON(blob(h))
	if err != nil {
		return nil, err
	}
	if err := checkDigest(data, h); err != nil {
		return nil, err
	}
	return data, nil
}

func checkDigest(data []byte, want v1.Hash) error {
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); want.Algorithm != "sha256" || got != want.Hex {
		return &DigestError{Name: want.String(), What: "content", Want: want.String(), Got: "sha256:" + got}
	}
	return nil
}

// compressedMagic reports gzip or zstd magic.
func compressedMagic(b []byte) bool {
	return bytes.HasPrefix(b, []byte{0x1f, 0x8b}) || bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd})
}

// decompress returns r, gunzipped or un-zstd'ed when it starts with either
// magic. Read to its end, it checks the gzip CRC (every member's) or the
// zstd checksum.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}
