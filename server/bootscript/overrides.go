package bootscript

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"text/template"
	"time"
)

// overrides are the admin's templates in one directory of the served tree
// (e.g. ROOT/ipxe/NAME.ipxe), each parsed once per change of its file,
// checked by a stat per use.
type overrides struct {
	dir   string // e.g. ROOT/ipxe
	ext   string // e.g. ".ipxe"
	what  string // for errors, e.g. "iPXE template"
	parse func(name string, data []byte) (*template.Template, error)

	mu    sync.Mutex
	cache map[string]*cachedTemplate
}

func newOverrides(root, dir, ext, what string, parse func(string, []byte) (*template.Template, error)) *overrides {
	return &overrides{dir: filepath.Join(root, dir), ext: ext, what: what, parse: parse, cache: map[string]*cachedTemplate{}}
}

// lookup returns the template DIR/NAME.EXT, reparsed only when the file
// changed. A missing file wraps ErrNoTemplate.
func (o *overrides) lookup(name string) (*template.Template, error) {
	path := filepath.Join(o.dir, name+o.ext)
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s %q: %s does not exist: %w", o.what, name, path, ErrNoTemplate)
		}
		return nil, fmt.Errorf("%s %q: %w", o.what, name, err)
	}
	st := stampOf(fi)
	o.mu.Lock()
	defer o.mu.Unlock()
	if c := o.cache[name]; c != nil && c.stamp == st {
		return c.t, c.err
	}
	c := &cachedTemplate{stamp: st}
	data, err := os.ReadFile(path)
	if err != nil {
		c.err = fmt.Errorf("%s %q: %w", o.what, name, err)
	} else {
		c.t, c.err = o.parse(name+o.ext, data)
	}
	o.cache[name] = c
	return c.t, c.err
}

func stampOf(fi fs.FileInfo) fileStamp {
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
		s.ctime = st.Ctim.Nano()
	}
	return s
}

type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
	ctime int64
}

type cachedTemplate struct {
	stamp fileStamp
	t     *template.Template
	err   error
}
