// Package chunkimage is the chunked image format shared by wwserver (which
// builds and serves it) and wwclient (which fetches and unpacks it in the
// two-stage boot).
//
// An image is its uncompressed newc cpio stream (the same archive the
// single-stage boot sends as one gzip initrd) cut into content-defined
// chunks (Rabin fingerprints, github.com/restic/chunker: a change to one
// file changes the chunks around it only, so two versions of an image share
// most chunks). Each chunk is compressed as one independent zstd frame and
// stored and served by the SHA-256 of its compressed bytes
// (GET /chunk/{sha256}). The index lists the chunks in stream order:
//
//	{"version":1,"format":"newc","compression":"zstd","size":N,
//	 "chunks":[{"sha256":"…","size":C,"usize":U},…]}
//
// size is the whole uncompressed stream (the sum of the usize values), size
// each chunk's compressed bytes, usize its uncompressed bytes. The SHA-256
// of the index bytes as served is the image's digest: the iPXE script puts
// it on the kernel command line (wwimage=), so a node verifies the index,
// the index verifies every chunk, and no server can hand a node another
// image than the one its boot started with.
package chunkimage

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Format constants of version 1.
const (
	Version     = 1
	Format      = "newc"
	Compression = "zstd"
)

// Limits every index must keep (and the builder keeps well within): they
// bound what a node allocates for one chunk and for the index.
const (
	// MaxChunkSize bounds a chunk's uncompressed size (the builder cuts at
	// 8 MiB at most).
	MaxChunkSize = 16 << 20
	// MaxCompressedSize bounds a chunk's compressed size: zstd's worst case
	// for incompressible input is a little over the input.
	MaxCompressedSize = MaxChunkSize + MaxChunkSize/128 + 4096
	// MaxChunks bounds the chunk list (at the 1 MiB average, 512 GiB).
	MaxChunks = 1 << 19
	// MaxIndexSize bounds the index bytes (about 120 bytes per chunk).
	MaxIndexSize = 96 << 20
)

// Index is the chunk list of one image.
type Index struct {
	Version     int     `json:"version"`
	Format      string  `json:"format"`
	Compression string  `json:"compression"`
	Size        int64   `json:"size"` // uncompressed stream, sum of the chunks' USize
	Chunks      []Chunk `json:"chunks"`
}

// Chunk is one entry of the index.
type Chunk struct {
	SHA256 string `json:"sha256"` // hex SHA-256 of the compressed bytes
	Size   int64  `json:"size"`   // compressed bytes
	USize  int64  `json:"usize"`  // uncompressed bytes
}

// CompressedSize is the sum of the chunks' compressed sizes.
func (ix *Index) CompressedSize() int64 {
	var n int64
	for _, c := range ix.Chunks {
		n += c.Size
	}
	return n
}

// Marshal returns the index bytes (compact JSON; the same index always gives
// the same bytes) and their digest.
func (ix *Index) Marshal() (data []byte, digest string, err error) {
	if err := ix.Validate(); err != nil {
		return nil, "", err
	}
	data, err = json.Marshal(ix)
	if err != nil {
		return nil, "", fmt.Errorf("encode image index: %w", err)
	}
	return data, Digest(data), nil
}

// Digest is the hex SHA-256 of data: the digest of an index, the name of a
// chunk.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// ValidDigest reports whether s is a digest as this format writes it: 64
// lower-case hex digits.
func ValidDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ErrDigest is returned (wrapped) when bytes do not have the digest they
// should have.
var ErrDigest = errors.New("digest mismatch")

// Parse decodes and validates index bytes. With want set, the bytes'
// digest must be want (an ErrDigest otherwise).
func Parse(data []byte, want string) (*Index, error) {
	if len(data) > MaxIndexSize {
		return nil, fmt.Errorf("image index: %d bytes, more than %d", len(data), MaxIndexSize)
	}
	if want != "" {
		if got := Digest(data); got != want {
			return nil, fmt.Errorf("image index: sha256 %s, want %s: %w", got, want, ErrDigest)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var ix Index
	if err := dec.Decode(&ix); err != nil {
		return nil, fmt.Errorf("image index: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("image index: trailing data after the JSON object")
	}
	if err := ix.Validate(); err != nil {
		return nil, err
	}
	return &ix, nil
}

// Validate checks the index against the format and its limits.
func (ix *Index) Validate() error {
	if ix.Version != Version {
		return fmt.Errorf("image index: version %d, this wwclient knows %d", ix.Version, Version)
	}
	if ix.Format != Format || ix.Compression != Compression {
		return fmt.Errorf("image index: format %q compression %q, want %q %q", ix.Format, ix.Compression, Format, Compression)
	}
	if len(ix.Chunks) > MaxChunks {
		return fmt.Errorf("image index: %d chunks, more than %d", len(ix.Chunks), MaxChunks)
	}
	var total int64
	for i, c := range ix.Chunks {
		if !ValidDigest(c.SHA256) {
			return fmt.Errorf("image index: chunk %d: bad sha256 %q", i, c.SHA256)
		}
		if c.Size <= 0 || c.Size > MaxCompressedSize {
			return fmt.Errorf("image index: chunk %d: size %d out of range (1..%d)", i, c.Size, MaxCompressedSize)
		}
		if c.USize <= 0 || c.USize > MaxChunkSize {
			return fmt.Errorf("image index: chunk %d: usize %d out of range (1..%d)", i, c.USize, MaxChunkSize)
		}
		total += c.USize // at most MaxChunks × MaxChunkSize: no overflow
	}
	if total != ix.Size {
		return fmt.Errorf("image index: chunks add up to %d bytes, size says %d", total, ix.Size)
	}
	return nil
}

// Verify checks a chunk's compressed bytes against its index entry.
func (c Chunk) Verify(data []byte) error {
	if int64(len(data)) != c.Size {
		return fmt.Errorf("chunk %s: %d bytes, want %d: %w", short(c.SHA256), len(data), c.Size, ErrDigest)
	}
	if got := Digest(data); got != c.SHA256 {
		return fmt.Errorf("chunk %s: sha256 %s: %w", short(c.SHA256), short(got), ErrDigest)
	}
	return nil
}

func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

var (
	decoderOnce sync.Once
	decoder     *zstd.Decoder
	decoderErr  error
)

// sharedDecoder is one zstd decoder for DecodeAll (safe for concurrent
// use), limited to what a valid chunk needs.
func sharedDecoder() (*zstd.Decoder, error) {
	decoderOnce.Do(func() {
		decoder, decoderErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(2),
			zstd.WithDecoderMaxMemory(MaxChunkSize),
			zstd.WithDecoderMaxWindow(MaxChunkSize))
	})
	return decoder, decoderErr
}

// Decompress decompresses a verified chunk into dst (reused when its
// capacity suffices) and checks its uncompressed size.
func (c Chunk) Decompress(dst, data []byte) ([]byte, error) {
	d, err := sharedDecoder()
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	if int64(cap(dst)) < c.USize {
		dst = make([]byte, 0, c.USize)
	}
	out, err := d.DecodeAll(data, dst[:0])
	if err != nil {
		return nil, fmt.Errorf("chunk %s: zstd: %w", short(c.SHA256), err)
	}
	if int64(len(out)) != c.USize {
		return nil, fmt.Errorf("chunk %s: %d bytes uncompressed, index says %d", short(c.SHA256), len(out), c.USize)
	}
	return out, nil
}
