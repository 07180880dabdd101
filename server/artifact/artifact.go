package artifact

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"sync/atomic"
	"time"
)

// Artifact is one file to serve: one or more files on disk served one after
// the other. The files of built artifacts are immutable (content-addressed);
// the kernel is the file in the image tree.
type Artifact struct {
	Name    string    // file name sent, e.g. "__SYSTEM__.img.gz", "vmlinuz-6.1.0-28-amd64"
	ETag    string    // quoted strong validator, e.g. "\"3f2a…\""
	Size    int64     // total bytes of all parts
	ModTime time.Time // newest part
	Parts   []string  // files on disk, served concatenated

	// kernelPath is a kernel's path inside its image rootfs ("" otherwise).
	kernelPath string

	sizes  []int64                       // expected size of each part; nil: take what is there
	open   func(i int) (*os.File, error) // nil: os.Open(Parts[i])
	forget func()                        // called when a part has gone missing
	// opened, when set, is the single part already open and checked: the
	// first Open returns it (a chunk request opens its file once); later
	// Opens open the part again. An Artifact never opened leaves it to the
	// os.File cleanup.
	opened atomic.Pointer[os.File]
}

// Open returns one ReadSeeker over all parts, for http.ServeContent (it
// supports Range across part boundaries). Data is read from the files on
// demand, never held in memory. Call Open soon after getting the Artifact: a
// cache part unused for longer than the Prune age may be removed.
//
// If a part no longer has the size it had when the Artifact was made (a
// kernel replaced in the image tree, the state directory deleted), Open fails
// and the next Builder call makes a fresh Artifact.
func (a *Artifact) Open() (io.ReadSeekCloser, error) {
	if f := a.opened.Swap(nil); f != nil {
		return f, nil
	}
	m := &multiFile{files: make([]*os.File, 0, len(a.Parts)), starts: make([]int64, 0, len(a.Parts))}
	var total int64
	for i, p := range a.Parts {
		var f *os.File
		var err error
		if a.open != nil {
			f, err = a.open(i)
		} else {
			f, err = os.Open(p)
		}
		if err == nil {
			var fi os.FileInfo
			if fi, err = f.Stat(); err == nil {
				switch {
				case !fi.Mode().IsRegular():
					err = fmt.Errorf("%s: not a regular file", p)
				case a.sizes != nil && fi.Size() != a.sizes[i]:
					err = fmt.Errorf("%s: size changed from %d to %d bytes: %w", p, a.sizes[i], fi.Size(), fs.ErrNotExist)
				default:
					m.starts = append(m.starts, total)
					m.files = append(m.files, f)
					total += fi.Size()
					continue
				}
			}
			f.Close()
		}
		m.Close()
		if errors.Is(err, fs.ErrNotExist) && a.forget != nil {
			a.forget()
		}
		return nil, fmt.Errorf("open %s: %w", a.Name, err)
	}
	if len(m.files) == 1 {
		// The plain file lets net/http use sendfile(2).
		return m.files[0], nil
	}
	m.SectionReader = io.NewSectionReader(m, 0, total)
	return m, nil
}

// multiFile reads several files as one. ReadAt uses pread, so the only state
// is the SectionReader's offset.
type multiFile struct {
	*io.SectionReader
	files  []*os.File
	starts []int64 // offset of each file in the whole
}

// ReadAt reads across file boundaries.
func (m *multiFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	// The file holding off: the last one starting at or before it.
	i := sort.Search(len(m.starts), func(i int) bool { return m.starts[i] > off }) - 1
	n := 0
	for ; i >= 0 && i < len(m.files) && n < len(p); i++ {
		k, err := m.files[i].ReadAt(p[n:], off+int64(n)-m.starts[i])
		n += k
		if err != nil && err != io.EOF {
			return n, err
		}
		// A short read without error cannot happen with os.File.ReadAt; at
		// io.EOF move on to the next file.
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Close closes every file.
func (m *multiFile) Close() error {
	var errs []error
	for _, f := range m.files {
		if err := f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	m.files = nil
	return errors.Join(errs...)
}
