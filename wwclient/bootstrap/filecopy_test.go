package bootstrap

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// copyWith writes size random bytes to a file, copies it with copyDataWith
// and returns the source data, what arrived and copyDataWith's results.
func copyWith(t *testing.T, size int, sendfile sendfileFunc) (want, got []byte, n int64, err error) {
	t.Helper()
	dir := t.TempDir()
	want = make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(size), 7))
	for i := range want {
		want[i] = byte(r.Uint32())
	}
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	if err := os.WriteFile(src, want, 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	n, err = copyDataWith(out, in, sendfile)
	if cerr := out.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	got, rerr := os.ReadFile(dst)
	if rerr != nil {
		t.Fatal(rerr)
	}
	return want, got, n, err
}

// TestCopyData: sendfile copies files of every size whole, and reports
// the bytes copied.
func TestCopyData(t *testing.T) {
	for _, size := range []int{0, 1, 32<<10 + 1, 3<<20 + 5} {
		want, got, n, err := copyWith(t, size, unix.Sendfile)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if n != int64(size) || !bytes.Equal(got, want) {
			t.Errorf("size %d: copied %d bytes, content equal %v", size, n, bytes.Equal(got, want))
		}
	}
}

// TestCopyDataFallback: when sendfile cannot (at once, or after part of
// the file), io.Copy copies the rest from where sendfile stopped.
func TestCopyDataFallback(t *testing.T) {
	const size = 1<<20 + 3
	for _, errno := range []error{unix.EINVAL, unix.ENOSYS, unix.EXDEV, unix.EOPNOTSUPP} {
		for _, first := range []int{0, 4097} {
			calls := 0
			sendfile := func(outFd, inFd int, off *int64, count int) (int, error) {
				calls++
				if calls == 1 && first > 0 {
					return unix.Sendfile(outFd, inFd, off, first)
				}
				return -1, errno
			}
			want, got, n, err := copyWith(t, size, sendfile)
			if err != nil || n != size || !bytes.Equal(got, want) {
				t.Errorf("%v after %d bytes: copied %d, err %v, content equal %v", errno, first, n, err, bytes.Equal(got, want))
			}
		}
	}
}

// TestCopyDataError: any other sendfile error is the copy's error.
func TestCopyDataError(t *testing.T) {
	sendfile := func(int, int, *int64, int) (int, error) { return -1, unix.EIO }
	if _, _, _, err := copyWith(t, 100, sendfile); !errors.Is(err, unix.EIO) {
		t.Errorf("err %v, want EIO", err)
	}
}
