package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/zstd"
)

// layerSource is one layer to apply, in order.
type layerSource struct {
	digest string
	size   int64 // as stored (compressed); 0 when unknown
	open   func() (io.ReadCloser, error)
}

// source is an opened SOURCE: its layers, bottom first.
type source struct {
	kind   string // "registry", "oci-layout", "oci-archive", "docker-archive", "rootfs-tar"
	digest string // image manifest digest ("" for a rootfs tar)
	layers []layerSource
}

// openSource recognises SOURCE. work is a private directory for unpacking
// archives (removed by the caller).
func openSource(ctx context.Context, src, work string, platform *v1.Platform) (*source, error) {
	if ref, ok := strings.CutPrefix(src, "docker://"); ok {
		r, err := name.ParseReference(ref)
		if err != nil {
			return nil, fmt.Errorf("registry reference %q: %w", ref, err)
		}
		img, err := remote.Image(r, remote.WithContext(ctx), remote.WithPlatform(*platform),
			remote.WithAuthFromKeychain(authn.DefaultKeychain))
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
		return fromImage("registry", img)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(src, "index.json")); err != nil {
			return nil, fmt.Errorf("%s is a directory but not an OCI image layout (no index.json)", src)
		}
		return fromLayout("oci-layout", src, platform)
	}
	kind, err := sniffFile(src)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "rootfs-tar":
		return &source{kind: kind, layers: []layerSource{{
			digest: filepath.Base(src), size: fi.Size(),
			open: func() (io.ReadCloser, error) { return os.Open(src) },
		}}}, nil
	}
	// An archive: make it an uncompressed file the libraries can seek in.
	plain, err := decompressedFile(src, work)
	if err != nil {
		return nil, err
	}
	if kind == "oci-archive" {
		dir := filepath.Join(work, "oci")
		if err := untarLayout(plain, dir); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		return fromLayout(kind, dir, platform)
	}
	img, err := tarball.ImageFromPath(plain, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: docker archive: %w", src, err)
	}
	return fromImage(kind, img)
}

func fromImage(kind string, img v1.Image) (*source, error) {
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("image digest: %w", err)
	}
	ls, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("image layers: %w", err)
	}
	s := &source{kind: kind, digest: d.String()}
	for _, l := range ls {
		ld, _ := l.Digest()
		size, _ := l.Size()
		s.layers = append(s.layers, layerSource{digest: ld.String(), size: size, open: l.Uncompressed})
	}
	return s, nil
}

// fromLayout picks the image for platform from an OCI layout's index
// (nested indexes are followed; an image without a platform matches).
func fromLayout(kind, dir string, platform *v1.Platform) (*source, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	img, err := pickImage(idx, platform, 0)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	return fromImage(kind, img)
}

func pickImage(idx v1.ImageIndex, platform *v1.Platform, depth int) (v1.Image, error) {
	if depth > 4 {
		return nil, errors.New("indexes nested too deep")
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var seen []string
	for _, d := range m.Manifests {
		if d.Platform != nil {
			seen = append(seen, d.Platform.String())
		}
		if d.Platform != nil && !d.Platform.Satisfies(*platform) {
			continue
		}
		switch {
		case d.MediaType.IsImage():
			return idx.Image(d.Digest)
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			if img, err := pickImage(child, platform, depth+1); err == nil {
				return img, nil
			}
		}
	}
	return nil, fmt.Errorf("no image for platform %s (has %v)", platform, seen)
}

// archiveName matches the top-level names of OCI archives (blobs/, index.json,
// oci-layout) and docker/podman save archives (manifest.json, repositories,
// HEX/layer.tar, HEX.json, HEX.tar, sha256:HEX).
var archiveName = regexp.MustCompile(`^(blobs(/|$)|oci-layout$|index\.json$|manifest\.json$|repositories$|(sha256:)?[0-9a-f]{64}([./]|$))`)

// sniffFile tells an OCI or docker archive from a plain root filesystem tar
// by the first entries' names (archives hold only their own top-level names).
func sniffFile(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	r, err := decompress(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	tr := tar.NewReader(r)
	oci := false
	for i := 0; i < 8; i++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if i == 0 {
				return "", fmt.Errorf("%s: not a tar archive (or OCI layout, docker archive, rootfs tar): %w", file, err)
			}
			break
		}
		n := strings.TrimLeft(path.Clean("/"+h.Name), "/")
		if n == "" {
			i--
			continue
		}
		if !archiveName.MatchString(n) {
			return "rootfs-tar", nil
		}
		if strings.HasPrefix(n, "oci-layout") || strings.HasPrefix(n, "index.json") || strings.HasPrefix(n, "blobs") {
			oci = true
		}
	}
	if oci {
		return "oci-archive", nil
	}
	return "docker-archive", nil
}

// decompress returns r, gunzipped or un-zstd'ed when it starts with either magic.
func decompress(r io.Reader) (io.Reader, error) {
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
	return br, nil
}

// decompressedFile returns path itself when it is not compressed, else an
// uncompressed copy in work.
func decompressedFile(path, work string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var magic [4]byte
	n, _ := io.ReadFull(f, magic[:])
	if n < 2 || !(magic[0] == 0x1f && magic[1] == 0x8b) && !bytes.Equal(magic[:], []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		return path, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	r, err := decompress(f)
	if err != nil {
		return "", err
	}
	out := filepath.Join(work, "archive.tar")
	w, err := os.Create(out)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return "", fmt.Errorf("decompress %s: %w", path, err)
	}
	return out, w.Close()
}

// untarLayout unpacks an OCI archive's layout files (oci-layout, index.json,
// blobs/ALG/HEX) into dir. Anything else is skipped; nothing leaves dir.
func untarLayout(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	layoutFile := regexp.MustCompile(`^(oci-layout|index\.json|blobs/[a-z0-9]+/[a-f0-9]{32,128})$`)
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read OCI archive: %w", err)
		}
		n := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag != tar.TypeReg || !layoutFile.MatchString(n) {
			continue
		}
		if err := root.MkdirAll(filepath.Dir(n), 0o700); err != nil {
			return err
		}
		w, err := root.OpenFile(n, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(w, tr)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("unpack %s: %w", n, err)
		}
	}
}
