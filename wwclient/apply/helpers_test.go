package apply

import (
	"bytes"
	"compress/gzip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
)

type ent struct {
	name  string
	body  string
	mode  cpio.FileMode // with type bits; 0 means regular 0644
	uid   int
	gid   int
	link  string
	mtime time.Time
	links int
	inode int64
}

func file(name, body string, perm cpio.FileMode) ent {
	return ent{name: name, body: body, mode: cpio.TypeReg | perm}
}
func dirent(name string, perm cpio.FileMode) ent { return ent{name: name, mode: cpio.TypeDir | perm} }
func symlinkent(name, target string) ent {
	return ent{name: name, link: target, mode: cpio.TypeSymlink | 0o777}
}

// rawCpio builds one newc archive.
func rawCpio(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	for _, e := range ents {
		mode := e.mode
		if mode == 0 {
			mode = cpio.TypeReg | 0o644
		}
		h := &cpio.Header{Name: e.name, Mode: mode, Uid: e.uid, Guid: e.gid, ModTime: e.mtime, Links: e.links, Inode: e.inode}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		body := []byte(e.body)
		if mode&cpio.ModeType == cpio.TypeSymlink {
			body = []byte(e.link)
		}
		h.Size = int64(len(body))
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if len(body) > 0 {
			if _, err := w.Write(body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func stat(t testing.TB, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown to other uids)")
	}
}
