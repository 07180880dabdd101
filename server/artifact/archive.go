package artifact

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/pgzip"
)

// gzipLevel is the compression level of every archive. Measured with
// BenchmarkGzipLevel on this 2-core VM (CPU time, as the VM was shared):
//
//	tree                              compress/gzip, 1 core   pgzip, all cores
//	lab image (2.9 MB cpio)           BestSpeed 1.42 MB 82 ms, Default 1.30 MB 125 ms
//	/usr/lib/x86_64-linux-gnu         BestSpeed 607 MB 22 s, Default 543 MB 105 s
//	(1.5 GB cpio, distro-like)
//	2.9 GB cpio, 74,000 files         BestSpeed 1189 MB 26.6 s  BestSpeed 1208 MB 16.9 s
//	(copy of a Debian /usr)                                     Default   1094 MB 29.6 s
//
// BestSpeed costs ~10% more bytes than Default for 1.75x less CPU with
// pgzip (5x with compress/gzip). A build is on the critical path of the
// first boot after every change, and a node on a LAN pulls 100 MB more in
// about a second, so BestSpeed it is. It is part of every cache key.
const gzipLevel = gzip.BestSpeed

// errChanged: a source file changed while it was being archived. The build
// is retried; it reads the new state.
var errChanged = errors.New("source changed during the build")

// maxFileSize is the newc format's limit for one file.
const maxFileSize = 1<<32 - 1

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzipLevel)
	return w
}}

// bufWriters buffer the compressor's many small writes into large file writes.
var bufWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(io.Discard, 256<<10) }}

// writeGzip writes one gzip member to w whose content is what fill writes.
// The member carries no name and no time, so equal content gives equal bytes.
//
// parallel compresses on every core (for images: gigabytes, on the critical
// path of the first boot after a change): pgzip cuts the content into
// 1 MiB blocks, compresses them concurrently and joins them, each ending
// with a sync flush, into one ordinary gzip member. It holds about
// 2 × GOMAXPROCS MiB per build. Overlays, small and built by the thousand,
// use one core each.
func writeGzip(w io.Writer, parallel bool, fill func(io.Writer) error) error {
	bw := bufWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() {
		bw.Reset(io.Discard)
		bufWriters.Put(bw)
	}()
	var zw io.WriteCloser
	if parallel {
		pw, err := pgzip.NewWriterLevel(bw, gzipLevel)
		if err != nil {
			return err
		}
		if err := pw.SetConcurrency(parallelBlock, runtime.GOMAXPROCS(0)); err != nil {
			return err
		}
		zw = pw
	} else {
		gw := gzipWriters.Get().(*gzip.Writer)
		gw.Reset(bw)
		defer func() {
			gw.Reset(io.Discard)
			gzipWriters.Put(gw)
		}()
		zw = gw
	}
	if err := fill(zw); err != nil {
		if parallel {
			zw.Close() // stops its goroutines
		}
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// parallelBlock is the block pgzip compresses at a time per core.
const parallelBlock = 1 << 20

// countWriter counts what passes through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// newArchive starts a newc cpio archive. Closing it writes the TRAILER!!!
// entry; every entry and the trailer are padded to 4 bytes by the format, so
// the archive's length is a multiple of 4, which lets the kernel unpack
// archives placed one after the other.
func newArchive(w io.Writer) *cpio.Writer { return cpio.NewWriter(w) }

// cpioMode converts a Go file mode to cpio type and permission bits.
// ok is false for types that are left out (devices, sockets): the kernel's
// devtmpfs provides device nodes.
func cpioMode(m fs.FileMode) (mode cpio.FileMode, ok bool) {
	mode = cpio.FileMode(m.Perm())
	switch {
	case m.IsRegular():
		mode |= cpio.TypeReg
	case m.IsDir():
		mode |= cpio.TypeDir
	case m&fs.ModeSymlink != 0:
		mode |= cpio.TypeSymlink
	case m&fs.ModeNamedPipe != 0:
		mode |= cpio.TypeFifo
	default:
		return 0, false
	}
	if m&fs.ModeSetuid != 0 {
		mode |= cpio.ModeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		mode |= cpio.ModeSetgid
	}
	if m&fs.ModeSticky != 0 {
		mode |= cpio.ModeSticky
	}
	return mode, true
}

// cpioTime clamps a time to what newc can hold (unsigned 32-bit seconds).
func cpioTime(t time.Time) time.Time {
	if t.Unix() < 0 {
		return time.Unix(0, 0)
	}
	return t
}

// header returns the cpio header for e stored under name, or nil when e's
// type is left out of archives.
func header(e *entry, name string) *cpio.Header {
	mode, ok := cpioMode(e.mode)
	if !ok {
		return nil
	}
	h := &cpio.Header{
		Name:    name,
		Mode:    mode,
		Uid:     int(e.uid),
		Guid:    int(e.gid),
		ModTime: cpioTime(e.mtime),
		Links:   1, // hard links are stored as separate files
	}
	if e.mode.IsDir() {
		h.Links = 2
	}
	return h
}

// writeEntry adds e to the archive as name. Regular files are opened with
// open (confined to the tree) and streamed; symlinks are stored as symlinks,
// never followed; devices and sockets are skipped.
func writeEntry(cw *cpio.Writer, e *entry, name string, open func() (*os.File, error)) error {
	h := header(e, name)
	if h == nil {
		return nil
	}
	switch {
	case e.mode&fs.ModeSymlink != 0:
		h.Size = int64(len(e.link))
		if err := cw.WriteHeader(h); err != nil {
			return err
		}
		_, err := io.WriteString(cw, e.link)
		return err
	case e.mode.IsRegular():
		return writeFile(cw, h, e.rel, open)
	default:
		return cw.WriteHeader(h)
	}
}

// writeFile streams a regular file. Mode, owner, times and size come from the
// open file, so the header matches the bytes that follow even if the file was
// replaced since the walk saw it.
func writeFile(cw *cpio.Writer, h *cpio.Header, rel string, open func() (*os.File, error)) error {
	f, err := open()
	if err != nil {
		return fmt.Errorf("open %s: %w", rel, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", rel, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: changed into a %v during the build: %w", rel, fi.Mode().Type(), errChanged)
	}
	if fi.Size() > maxFileSize {
		return fmt.Errorf("%s: %d bytes is larger than a cpio (newc) archive can hold (4 GiB)", rel, fi.Size())
	}
	e := newEntry(rel, fi)
	h.Mode, _ = cpioMode(e.mode)
	h.Uid, h.Guid, h.ModTime, h.Size = int(e.uid), int(e.gid), cpioTime(e.mtime), e.size
	if err := cw.WriteHeader(h); err != nil {
		return err
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	n, err := io.CopyBuffer(cw, io.LimitReader(f, h.Size), *bp)
	if err != nil {
		return fmt.Errorf("archive %s: %w", rel, err)
	}
	if n != h.Size {
		return fmt.Errorf("%s: shrank from %d to %d bytes during the build: %w", rel, h.Size, n, errChanged)
	}
	return nil
}

// writeData adds a file with the given content (a rendered template).
func writeData(cw *cpio.Writer, e *entry, name string, data []byte) error {
	h := header(e, name)
	h.Mode = h.Mode&^cpio.ModeType | cpio.TypeReg
	h.Size = int64(len(data))
	if err := cw.WriteHeader(h); err != nil {
		return err
	}
	_, err := cw.Write(data)
	return err
}
