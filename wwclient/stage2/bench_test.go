package stage2

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/wwcluster/ww/server/chunkstore"
	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
)

// benchTree is the tree BenchmarkUnpack archives: $WW_BENCH_TREE, else the
// Go distribution's /usr/local/go (~270 MB, 15,000 files: source, binaries,
// test data), else a synthetic tree.
func benchTree(b *testing.B) string {
	if d := os.Getenv("WW_BENCH_TREE"); d != "" {
		return d
	}
	if fi, err := os.Stat("/usr/local/go"); err == nil && fi.IsDir() {
		return "/usr/local/go"
	}
	dir := b.TempDir()
	img := bigArchive(b, 400, 256<<10)
	if _, err := Extract(dir, bytes.NewReader(img)); err != nil {
		b.Fatal(err)
	}
	return dir
}

// cpioOf archives a tree as the server does (regular files, directories,
// symlinks; names relative).
func cpioOf(b *testing.B, dir string) []byte {
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h := &cpio.Header{Name: rel, ModTime: fi.ModTime(), Mode: cpio.FileMode(fi.Mode().Perm())}
		switch {
		case fi.Mode().IsRegular():
			h.Mode |= cpio.TypeReg
			h.Size = fi.Size()
		case fi.IsDir():
			h.Mode |= cpio.TypeDir
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			h.Mode |= cpio.TypeSymlink
			h.Size = int64(len(l))
			if err := w.WriteHeader(h); err != nil {
				return err
			}
			_, err = io.WriteString(w, l)
			return err
		default:
			return nil
		}
		if err := w.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(w, f)
			return err
		}
		return nil
	})
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// chunkReader is the chunked image read back in order from memory, as
// Stream does (verify, decompress, hand out).
type chunkReader struct {
	ix     *chunkimage.Index
	chunks map[string][]byte
	next   int
	cur    []byte
	raw    []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.next == len(r.ix.Chunks) {
			return 0, io.EOF
		}
		c := r.ix.Chunks[r.next]
		data := r.chunks[c.SHA256]
		if err := c.Verify(data); err != nil {
			return 0, err
		}
		raw, err := c.Decompress(r.raw, data)
		if err != nil {
			return 0, err
		}
		r.raw, r.cur = raw, raw
		r.next++
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// BenchmarkUnpack compares, in-process, the single-stage image form (one
// gzip member at BestSpeed, as the server builds it) with the chunked form
// (zstd chunks, verified by sha256): decoding alone, and decoding plus
// extracting into a tmpfs (/dev/shm). MB/s are of the uncompressed stream.
func BenchmarkUnpack(b *testing.B) {
	tree := benchTree(b)
	stream := cpioOf(b, tree)
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	zw.Write(stream)
	zw.Close()
	st, err := chunkstore.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ix, _, release, err := st.Build(context.Background(), bytes.NewReader(stream), chunkstore.BuildOptions{})
	if err != nil {
		b.Fatal(err)
	}
	release()
	chunks := map[string][]byte{}
	for _, c := range ix.Chunks {
		if chunks[c.SHA256], err = os.ReadFile(filepath.Join(st.Dir(), c.SHA256)); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("tree %s: cpio %.1f MB; gzip -1 %.1f MB; zstd chunks %.1f MB in %d chunks", tree, float64(len(stream))/1e6,
		float64(gz.Len())/1e6, float64(ix.CompressedSize())/1e6, len(ix.Chunks))
	shm := "/dev/shm"
	if fi, err := os.Stat(shm); err != nil || !fi.IsDir() {
		shm = ""
	}
	forms := []struct {
		name string
		open func() io.Reader
	}{
		{"gzip", func() io.Reader {
			r, err := gzip.NewReader(bytes.NewReader(gz.Bytes()))
			if err != nil {
				b.Fatal(err)
			}
			return r
		}},
		{"zstd-chunks", func() io.Reader { return &chunkReader{ix: ix, chunks: chunks} }},
	}
	for _, f := range forms {
		b.Run(f.name+"/decode", func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			cpu := cpuTime()
			for b.Loop() {
				if n, err := io.Copy(io.Discard, f.open()); err != nil || n != int64(len(stream)) {
					b.Fatalf("%d bytes, %v", n, err)
				}
			}
			reportCPU(b, cpu, len(stream))
		})
		b.Run(f.name+"/extract", func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			var cpu time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir, err := os.MkdirTemp(shm, "wwbench-")
				if err != nil {
					b.Fatal(err)
				}
				r := f.open()
				b.StartTimer()
				c := cpuTime()
				if _, err := Extract(dir, r); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - c
				b.StopTimer()
				if err := os.RemoveAll(dir); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			reportCPU(b, cpuTime()-cpu, len(stream))
		})
	}
}

// cpuTime is the process' user + system time: on a shared machine the
// wall clock says little, CPU time per MB says more.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time spent since start (a cpuTime value; for
// extract, cpuTime() minus the time counted) as cpu-MB/s.
func reportCPU(b *testing.B, start time.Duration, size int) {
	used := cpuTime() - start
	if used > 0 {
		b.ReportMetric(float64(size)*float64(b.N)/1e6/used.Seconds(), "cpu-MB/s")
	}
}
