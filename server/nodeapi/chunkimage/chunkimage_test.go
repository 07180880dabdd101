package chunkimage

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func testIndex(t *testing.T) (*Index, [][]byte) {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	ix := &Index{Version: Version, Format: Format, Compression: Compression}
	var frames [][]byte
	for _, s := range []string{strings.Repeat("a", 5000), "hello, chunk", strings.Repeat("xyz", 999)} {
		z := enc.EncodeAll([]byte(s), nil)
		frames = append(frames, z)
		ix.Chunks = append(ix.Chunks, Chunk{SHA256: Digest(z), Size: int64(len(z)), USize: int64(len(s))})
		ix.Size += int64(len(s))
	}
	return ix, frames
}

func TestIndexRoundTrip(t *testing.T) {
	ix, frames := testIndex(t)
	data, digest, err := ix.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !ValidDigest(digest) || digest != Digest(data) {
		t.Fatalf("digest %q", digest)
	}
	back, err := Parse(data, digest)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for i, c := range back.Chunks {
		if err := c.Verify(frames[i]); err != nil {
			t.Fatal(err)
		}
		raw, err := c.Decompress(nil, frames[i])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw...)
	}
	if int64(len(out)) != ix.Size {
		t.Fatalf("%d bytes out, index says %d", len(out), ix.Size)
	}
	// Another digest is refused.
	if _, err := Parse(data, Digest([]byte("other"))); !errors.Is(err, ErrDigest) {
		t.Fatalf("wrong digest: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	ix, frames := testIndex(t)
	good, _, _ := ix.Marshal()
	cases := map[string]string{
		"version":   strings.Replace(string(good), `"version":1`, `"version":2`, 1),
		"unknown":   strings.Replace(string(good), `"version":1`, `"version":1,"extra":true`, 1),
		"trailing":  string(good) + "{}",
		"size":      strings.Replace(string(good), `"size":`+itoa(ix.Size), `"size":`+itoa(ix.Size+1), 1),
		"digest":    strings.Replace(string(good), ix.Chunks[0].SHA256, strings.ToUpper(ix.Chunks[0].SHA256), 1),
		"traversal": strings.Replace(string(good), ix.Chunks[0].SHA256, "../../../../etc/passwd", 1),
		"huge":      strings.Replace(string(good), `"usize":5000`, `"usize":99999999999`, 1),
		"negative":  strings.Replace(string(good), `"usize":5000`, `"usize":-5`, 1),
		"format":    strings.Replace(string(good), `"zstd"`, `"gzip"`, 1),
		"not json":  "{",
	}
	for name, data := range cases {
		if data == string(good) && name != "trailing" {
			t.Fatalf("%s: replacement did not apply", name)
		}
		if _, err := Parse([]byte(data), ""); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A chunk whose bytes are right in length but not in content; and one
	// that decompresses to another length than the index says.
	bad := bytes.Clone(frames[0])
	bad[len(bad)-1] ^= 1
	if err := ix.Chunks[0].Verify(bad); !errors.Is(err, ErrDigest) {
		t.Errorf("corrupt chunk: %v", err)
	}
	c := ix.Chunks[1]
	c.USize++
	if _, err := c.Decompress(nil, frames[1]); err == nil {
		t.Error("wrong usize accepted")
	}
	if _, err := ix.Chunks[1].Decompress(nil, []byte("not zstd at all")); err == nil {
		t.Error("garbage decompressed")
	}
}

func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
