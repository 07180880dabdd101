package stage2

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
)

// consoleLines collects say's lines.
type consoleLines struct {
	mu    sync.Mutex
	lines []string
}

func (c *consoleLines) say(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, fmt.Sprintf(format, args...))
}

func (c *consoleLines) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

func memInfo(t *testing.T, avail int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "meminfo")
	data := fmt.Sprintf("MemTotal:       16000000 kB\nMemFree:         1000 kB\nMemAvailable:   %d kB\nBuffers: 0 kB\n", avail>>10)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoadUnpacksAndReports: the whole second stage after the network:
// index, memory check, fetch, unpack, progress posts ending at 100%.
func TestLoadUnpacksAndReports(t *testing.T) {
	img := sharedImage(t)
	s := newImgServer(t, img)
	f := fetcher(t, img, s)
	dir := t.TempDir()
	l := &Loader{MemInfo: memInfo(t, 8<<30)}
	var con consoleLines
	if err := l.Load(t.Context(), f, f.NewReporter(nil, "", time.Millisecond), dir, con.say); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "usr/lib/f007"))
	if err != nil || len(got) != 64<<10 {
		t.Fatalf("unpacked file: %d bytes, %v", len(got), err)
	}
	s.mu.Lock()
	reps := append([]Report(nil), s.progress...)
	s.mu.Unlock()
	if len(reps) == 0 || reps[len(reps)-1] != (Report{Done: img.ix.Size, Total: img.ix.Size}) {
		t.Fatalf("progress posts %+v, want the last at 100%%", reps)
	}
	for i := 1; i < len(reps); i++ {
		if reps[i].Done < reps[i-1].Done {
			t.Errorf("progress went back: %+v", reps)
		}
	}
	if out := con.String(); !strings.Contains(out, "image unpacked: 24 files") {
		t.Errorf("console:\n%s", out)
	}
}

// TestLoadRefusesTooBig: an image larger than the memory is refused before
// any chunk is fetched, with a console line and a NO_MEMORY post.
func TestLoadRefusesTooBig(t *testing.T) {
	img := sharedImage(t)
	s := newImgServer(t, img)
	f := fetcher(t, img, s)
	l := &Loader{MemInfo: memInfo(t, 64<<20)}
	var con consoleLines
	err := l.Load(t.Context(), f, f.NewReporter(nil, "", 0), t.TempDir(), con.say)
	if !errors.Is(err, ErrTooBig) {
		t.Fatalf("err %v, want ErrTooBig", err)
	}
	if out := con.String(); !strings.Contains(out, "ERROR: image does not fit in memory") || !strings.Contains(out, "of memory is available") {
		t.Errorf("console:\n%s", out)
	}
	for _, r := range s.log() {
		if strings.Contains(r, "/chunk/") {
			t.Fatalf("fetched a chunk of a refused image: %s", r)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.progress) != 1 || s.progress[0].Error != ReasonNoMemory || s.progress[0].Total != img.ix.Size {
		t.Fatalf("progress posts %+v", s.progress)
	}
}

func TestCheckFits(t *testing.T) {
	ix := &chunkimage.Index{Size: 4 << 30, Chunks: []chunkimage.Chunk{{Size: 1 << 20, USize: 8 << 20}}}
	if err := CheckFits(ix, 16<<30, -1, 4); err != nil {
		t.Errorf("4 GiB in 16 GiB: %v", err)
	}
	if err := CheckFits(ix, 4<<30, -1, 4); !errors.Is(err, ErrTooBig) {
		t.Errorf("4 GiB in 4 GiB: %v", err)
	}
	if err := CheckFits(ix, 16<<30, 2<<30, 4); !errors.Is(err, ErrTooBig) || !strings.Contains(err.Error(), "tmpfs root has 2.0 GiB free") {
		t.Errorf("tmpfs too small: %v", err)
	}
	if _, err := MemAvailable([]byte("MemTotal: 1 kB\n")); err == nil {
		t.Error("no MemAvailable: no error")
	}
	if n, err := MemAvailable([]byte("MemTotal: 5 kB\nMemAvailable:    2048 kB\n")); err != nil || n != 2<<20 {
		t.Errorf("MemAvailable %d %v", n, err)
	}
}

// TestReporterRateLimit: many updates make few posts (whole percents, at
// most one per interval); Update never blocks.
func TestReporterRateLimit(t *testing.T) {
	img := sharedImage(t)
	s := newImgServer(t, img)
	f := fetcher(t, img, s)
	r := f.NewReporter(nil, "key", time.Hour)
	done := make(chan struct{})
	ctx, cancel := contextWithCancel(t)
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	for i := range 1000 {
		r.Update(int64(i), 1000)
	}
	cancel()
	<-done
	s.mu.Lock()
	n := len(s.progress)
	s.mu.Unlock()
	if n > 1 {
		t.Errorf("%d posts within one interval", n)
	}
	for _, l := range s.log() {
		if strings.HasPrefix(l, "POST /progress/") && !strings.Contains(l, testMAC) {
			t.Errorf("post to %s", l)
		}
	}
}

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}
