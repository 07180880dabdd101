package regularfile

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("file", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("fifo", filepath.Join(dir, "fifolink")); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	for _, name := range []string{"file", "link"} {
		f, fi, err := Open(root, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil || string(b) != "data" || fi.Size() != 4 {
			t.Errorf("%s: %q %v size %d", name, b, err, fi.Size())
		}
	}

	// A FIFO with no writer would block an ordinary open forever: the
	// call runs with a deadline so a regression fails instead of hanging.
	for _, tc := range []struct{ name, kind string }{
		{"fifo", "FIFO"}, {"fifolink", "FIFO"}, {"sub", "directory"}, {"sock", "socket"},
	} {
		done := make(chan error, 1)
		go func() {
			f, _, err := Open(root, tc.name)
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) {
				t.Errorf("%s: err = %v, want ErrNotRegular", tc.name, err)
			} else if want := tc.name + ": not a regular file (" + tc.kind + ")"; err.Error() != want {
				t.Errorf("%s: error %q, want %q", tc.name, err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Open blocked", tc.name)
		}
	}
	if _, _, err := Open(root, "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}
