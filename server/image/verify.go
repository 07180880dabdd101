package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DigestError is a blob whose content does not match the digest it is
// known by: the import is refused.
type DigestError struct {
	Layer int    // 1-based; 0 for a config or manifest
	Name  string // the layer's digest or file name
	What  string // "content", "uncompressed content (diff_id)", "config", "size"
	Want  string
	Got   string
}

func (e *DigestError) Error() string {
	where := e.Name
	if e.Layer > 0 {
		where = fmt.Sprintf("layer %d (%s)", e.Layer, e.Name)
	}
	if e.What == "size" {
		return fmt.Sprintf("%s: %s bytes stored, the manifest says %s: refused", where, e.Got, e.Want)
	}
	return fmt.Sprintf("%s: %s does not match its digest %s (got %s): refused", where, e.What, e.Want, e.Got)
}

// hashingReader hashes and counts what is read through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if n > 0 {
		h.n += int64(n)
		if h.h != nil {
			h.h.Write(p[:n])
		}
	}
	return n, err
}

func (h *hashingReader) sum() string { return "sha256:" + hex.EncodeToString(h.h.Sum(nil)) }

func hasherFor(d v1.Hash) (hash.Hash, error) {
	switch d.Algorithm {
	case "":
		return nil, nil
	case "sha256":
		return sha256.New(), nil
	}
	return nil, fmt.Errorf("digest %s: only sha256 is supported", d)
}

// applyOne applies one layer and verifies it: every stored byte is read to
// its end (the tar stops at its end marker, before the tar padding, the
// gzip trailer with its CRC and the end of the blob) and checked against
// the layer's digest, size and diff_id. A layer that fails is refused
// with its name; what it wrote is in the temporary tree, thrown away.
func applyOne(ctx context.Context, a *applier, l layerSource, p *progress) error {
	label := fmt.Sprintf("layer %d (%s)", a.layer, l.name)
	storedHash, err := hasherFor(l.digest)
	if err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	diffHash, err := hasherFor(l.diffID)
	if err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	rc, err := l.open()
	if err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	defer rc.Close()
	p.start(a.layer, l)
	var raw io.Reader = rc
	if l.size > 0 {
		raw = io.LimitReader(rc, l.size+1) // a longer blob is refused without reading it all
	}
	stored := &hashingReader{r: &ctxReader{ctx: ctx, r: raw, onRead: p.add}, h: storedHash}
	dr, err := decompress(stored)
	if err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	defer dr.Close()
	plain := &hashingReader{r: dr, h: diffHash}
	applyErr := a.applyLayer(plain)
	var le *LimitError
	if ctx.Err() != nil {
		return fmt.Errorf("import interrupted: %w", ctx.Err())
	}
	if errors.As(applyErr, &le) {
		return applyErr
	}
	// Read what the tar left: the uncompressed stream to its end (a gzip
	// CRC or zstd checksum is checked there), then the stored bytes.
	if _, err := io.Copy(io.Discard, plain); err != nil && applyErr == nil {
		applyErr = fmt.Errorf("%s: decompress: %w", label, err)
	}
	if _, err := io.Copy(io.Discard, stored); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("import interrupted: %w", ctx.Err())
		}
		if applyErr == nil {
			applyErr = fmt.Errorf("%s: read: %w", label, err)
		}
	}
	// A digest mismatch explains any other failure: it comes first.
	if storedHash != nil && stored.sum() != l.digest.String() {
		return &DigestError{Layer: a.layer, Name: l.name, What: "content", Want: l.digest.String(), Got: stored.sum()}
	}
	if l.size > 0 && stored.n != l.size && l.digest.Algorithm != "" {
		return &DigestError{Layer: a.layer, Name: l.name, What: "size", Want: fmt.Sprint(l.size), Got: fmt.Sprint(stored.n)}
	}
	if applyErr != nil {
		return applyErr
	}
	if diffHash != nil && plain.sum() != l.diffID.String() {
		return &DigestError{Layer: a.layer, Name: l.name, What: "uncompressed content (diff_id)", Want: l.diffID.String(), Got: plain.sum()}
	}
	return nil
}
