package apply

import (
	"bytes"
	"compress/gzip"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// The child half of TestApplyKilledMidway: apply stdin to $WWAPPLY_ROOT.
func TestApplyKillChild(t *testing.T) {
	root := os.Getenv("WWAPPLY_ROOT")
	if root == "" {
		t.Skip("helper process for TestApplyKilledMidway")
	}
	_, err := Apply(root, os.Stdin, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child apply:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

const (
	killFiles    = 10
	killFileSize = 2 << 20
)

type killFixture struct {
	root     string
	old, new [][]byte
	stream   []byte // gzip of the archive
	// offset in stream where file i's data starts (after a gzip flush)
	dataStart []int
}

func randBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// newKillFixture writes the old versions of the files and builds a gzip
// stream with the new versions, flushed so that any prefix decodes up to
// the flush points.
func newKillFixture(t *testing.T) *killFixture {
	f := &killFixture{root: t.TempDir()}
	if err := os.Mkdir(filepath.Join(f.root, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.NoCompression) // random data does not compress anyway
	w := cpio.NewWriter(zw)
	for i := 0; i < killFiles; i++ {
		o, n := randBytes(t, killFileSize), randBytes(t, killFileSize)
		f.old, f.new = append(f.old, o), append(f.new, n)
		if err := os.WriteFile(filepath.Join(f.root, "d", fname(i)), o, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteHeader(&cpio.Header{Name: "d/" + fname(i), Mode: cpio.TypeReg | 0o644, Size: int64(len(n)), Uid: os.Geteuid(), Guid: os.Getegid()}); err != nil {
			t.Fatal(err)
		}
		// header is written; flush so the data offset in the stream is known
		if err := zw.Flush(); err != nil {
			t.Fatal(err)
		}
		f.dataStart = append(f.dataStart, out.Len())
		if _, err := w.Write(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.stream = out.Bytes()
	return f
}

func fname(i int) string { return fmt.Sprintf("f%02d", i) }

// runAndKill starts the child, writes stream[:cut] to its stdin and
// SIGKILLs it once the write has been accepted. Returns whether the child
// finished on its own before the kill (only possible for a full stream).
func (f *killFixture) runAndKill(t *testing.T, cut int) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestApplyKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "WWAPPLY_ROOT="+f.root)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Write returns once the child has read all but at most one pipe
	// buffer (64 KiB) of the prefix: it is then busy with the data at cut.
	if _, err := stdin.Write(f.stream[:cut]); err != nil {
		t.Fatalf("write to child: %v (stderr: %s)", err, stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	stdin.Close()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed mid-apply: %v (stderr: %s)", err, stderr.String())
	}
}

// check asserts every file is fully old or fully new and returns which
// are new.
func (f *killFixture) check(t *testing.T) []bool {
	isNew := make([]bool, killFiles)
	for i := 0; i < killFiles; i++ {
		got, err := os.ReadFile(filepath.Join(f.root, "d", fname(i)))
		if err != nil {
			t.Fatalf("%s: %v", fname(i), err)
		}
		switch {
		case bytes.Equal(got, f.new[i]):
			isNew[i] = true
		case bytes.Equal(got, f.old[i]):
		default:
			t.Fatalf("%s is neither the old nor the new version (%d bytes)", fname(i), len(got))
		}
	}
	return isNew
}

func TestApplyKilledMidway(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes writing 20 MiB")
	}
	f := newKillFixture(t)
	k := 4
	cut := f.dataStart[k] + killFileSize*3/4 // deep inside file k's data
	f.runAndKill(t, cut)

	isNew := f.check(t)
	for i := 0; i < killFiles; i++ {
		if want := i < k; isNew[i] != want {
			t.Errorf("%s: new=%v, want %v", fname(i), isNew[i], want)
		}
	}
	// the kill hit the write of file k: its temporary file is there,
	// partial, and the target is still the old version (checked above)
	tmp, err := os.Stat(filepath.Join(f.root, "d", "."+fname(k)+".wwtmp"))
	if err != nil {
		t.Fatalf("expected the interrupted temporary file: %v", err)
	}
	if tmp.Size() == 0 || tmp.Size() >= killFileSize {
		t.Fatalf("temporary file size %d: not a partial write", tmp.Size())
	}

	// a complete apply afterwards finishes the job and cleans up
	res, err := Apply(f.root, bytes.NewReader(f.stream), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != killFiles-k || res.Unchanged != k {
		t.Fatalf("re-apply: %+v", res)
	}
	for i, n := range f.check(t) {
		if !n {
			t.Errorf("%s not new after re-apply", fname(i))
		}
	}
	left, _ := filepath.Glob(filepath.Join(f.root, "d", ".*.wwtmp"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// Kill at random points: every file is always old or new.
func TestApplyKilledAtRandomPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes writing 20 MiB")
	}
	f := newKillFixture(t)
	r := rand.New(rand.NewPCG(uint64(os.Getpid()), 42))
	for run := 0; run < 4; run++ {
		cut := f.dataStart[0] + 128<<10 + r.IntN(len(f.stream)-f.dataStart[0]-256<<10)
		f.runAndKill(t, cut)
		isNew := f.check(t)
		t.Logf("run %d: cut at %d/%d: new=%v", run, cut, len(f.stream), isNew)
		// files are applied in order: the new ones are a prefix
		for i := 1; i < killFiles; i++ {
			if isNew[i] && !isNew[i-1] {
				t.Fatalf("run %d: new files are not a prefix: %v", run, isNew)
			}
		}
	}
}
