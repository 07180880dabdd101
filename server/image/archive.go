package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// tarArchive reads the files of an OCI archive or a docker/podman save
// archive where they are, without unpacking it: a file of an uncompressed
// archive is read at its offset; a compressed archive is decompressed
// forward from its start, restarting only for a file that lies behind the
// last one read. Only one file is open at a time.
type tarArchive struct {
	path       string
	f          *os.File
	size       int64
	compressed bool
	entries    map[string]*tarEntry // by cleaned name; the first of duplicates
	seq        *seqTar
}

type tarEntry struct {
	idx  int // position in the archive (0 = first entry)
	typ  byte
	link string
	size int64
	off  int64  // data offset in an uncompressed archive; -1 when it must be read through tar (compressed, sparse)
	data []byte // a small file of a compressed archive, kept from the scan
}

// seqTar is a tar reader positioned after entry idx.
type seqTar struct {
	tr     *tar.Reader
	closer io.Closer
	idx    int
}

// Archive scanning limits: a root filesystem tar is recognised early (see
// rootfsEntry), an image archive holds a few entries per layer.
const (
	maxSniffEntries   = 10000
	maxArchiveEntries = 100000
)

// The scan of a compressed archive keeps its small files (manifests,
// configs, indexes), so reading them takes no further pass.
const (
	maxKeptFile  = 1 << 20
	maxKeptTotal = 16 << 20
)

// scanArchive opens file and tells what it is: "oci-archive" (oci-layout
// and index.json at the top), "docker-archive" (manifest.json at the top)
// or "rootfs-tar". For an archive it indexes every entry; for a root
// filesystem tar it stops at the first entry no image archive holds. The
// caller closes the archive.
func scanArchive(file string) (string, *tarArchive, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", nil, fmt.Errorf("source: %w", err)
	}
	a := &tarArchive{path: file, f: f, entries: map[string]*tarEntry{}}
	kind, err := a.scan()
	if err != nil {
		f.Close()
		return "", nil, fmt.Errorf("%s: %w", file, err)
	}
	return kind, a, nil
}

func (a *tarArchive) scan() (string, error) {
	fi, err := a.f.Stat()
	if err != nil {
		return "", err
	}
	a.size = fi.Size()
	var magic [4]byte
	n, _ := a.f.ReadAt(magic[:], 0)
	a.compressed = compressedMagic(magic[:n])
	whole := io.NewSectionReader(a.f, 0, a.size)
	var r io.Reader
	var pos *countingReader
	if a.compressed {
		d, err := decompress(whole)
		if err != nil {
			return "", err
		}
		defer d.Close()
		r = d
	} else {
		pos = &countingReader{r: whole}
		r = pos
	}
	tr := tar.NewReader(r)
	marker := false
	var kept int64
	for i := 0; ; i++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if i == 0 {
				return "", errors.New("an empty tar archive")
			}
			break
		}
		if err != nil {
			if i == 0 {
				return "", fmt.Errorf("not a tar archive (nor an OCI layout, docker archive or rootfs tar): %w", err)
			}
			return "", fmt.Errorf("read tar: %w", err)
		}
		name := cleanArchiveName(h.Name)
		switch name {
		case "manifest.json", "index.json", "oci-layout", "repositories":
			marker = true
		}
		if !marker && (rootfsEntry(h, name) || i >= maxSniffEntries) {
			return "rootfs-tar", nil
		}
		if i >= maxArchiveEntries {
			return "", fmt.Errorf("more than %d entries: not an image archive", maxArchiveEntries)
		}
		if _, dup := a.entries[name]; dup || name == "" {
			continue
		}
		e := &tarEntry{idx: i, typ: h.Typeflag, link: h.Linkname, size: h.Size, off: -1}
		switch {
		case pos != nil && !sparse(h):
			e.off = pos.n
		case pos == nil && h.Typeflag == tar.TypeReg && h.Size <= maxKeptFile && kept+h.Size <= maxKeptTotal:
			if e.data, err = io.ReadAll(tr); err != nil {
				return "", fmt.Errorf("read tar: %s: %w", name, err)
			}
			kept += h.Size
		}
		a.entries[name] = e
	}
	switch {
	case a.entries["oci-layout"] != nil && a.entries["index.json"] != nil:
		return "oci-archive", nil
	case a.entries["manifest.json"] != nil:
		return "docker-archive", nil
	}
	return "rootfs-tar", nil
}

// rootfsEntry reports an entry no OCI or docker archive holds (device
// nodes, FIFOs, hard links, paths four or more deep), so the scan of a
// root filesystem tar stops early.
func rootfsEntry(h *tar.Header, name string) bool {
	switch h.Typeflag {
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeLink:
		return true
	}
	return strings.Count(name, "/") >= 3
}

func sparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// cleanArchiveName is name relative to the archive's top ("./a//b" is
// "a/b", the top itself "").
func cleanArchiveName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// open returns the content of the regular file name, following symlinks
// and hard links inside the archive (old docker save archives link
// duplicate layers). The reader is valid until the next open.
func (a *tarArchive) open(name string) (io.ReadCloser, error) {
	e, err := a.resolve(name)
	if err != nil {
		return nil, err
	}
	if e.off >= 0 {
		return io.NopCloser(io.NewSectionReader(a.f, e.off, e.size)), nil
	}
	if e.data != nil {
		return io.NopCloser(bytes.NewReader(e.data)), nil
	}
	if a.seq == nil || a.seq.idx >= e.idx {
		a.closeSeq()
		var r io.Reader = io.NewSectionReader(a.f, 0, a.size)
		s := &seqTar{idx: -1}
		if a.compressed {
			d, err := decompress(r)
			if err != nil {
				return nil, err
			}
			r, s.closer = d, d
		}
		s.tr = tar.NewReader(r)
		a.seq = s
	}
	for a.seq.idx < e.idx {
		if _, err := a.seq.tr.Next(); err != nil {
			a.closeSeq()
			return nil, fmt.Errorf("%s: %s: archive changed while being read: %w", a.path, name, err)
		}
		a.seq.idx++
	}
	return io.NopCloser(a.seq.tr), nil
}

func (a *tarArchive) resolve(name string) (*tarEntry, error) {
	orig := name
	for range 8 {
		name = cleanArchiveName(name)
		e := a.entries[name]
		if e == nil {
			return nil, fmt.Errorf("%s: no %s in the archive: %w", a.path, orig, fs.ErrNotExist)
		}
		switch e.typ {
		case tar.TypeReg:
			return e, nil
		case tar.TypeSymlink:
			if strings.HasPrefix(e.link, "/") {
				name = e.link
			} else {
				name = path.Join(path.Dir(name), e.link)
			}
		case tar.TypeLink:
			name = e.link
		default:
			return nil, fmt.Errorf("%s: %s in the archive is not a regular file", a.path, orig)
		}
	}
	return nil, fmt.Errorf("%s: %s in the archive: too many links", a.path, orig)
}

func (a *tarArchive) closeSeq() {
	if a.seq != nil && a.seq.closer != nil {
		a.seq.closer.Close()
	}
	a.seq = nil
}

func (a *tarArchive) Close() error {
	a.closeSeq()
	return a.f.Close()
}

// countingReader counts the bytes read and skipped (tar skips file data
// with Seek when it can), which is the data offset of the entry tar.Next
// just returned.
type countingReader struct {
	r *io.SectionReader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Seek(off int64, whence int) (int64, error) {
	n, err := c.r.Seek(off, whence)
	if err == nil {
		c.n = n
	}
	return n, err
}
