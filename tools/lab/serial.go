package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// pollInterval is how often log files are re-read while waiting.
const pollInterval = 200 * time.Millisecond

// ErrExited is returned by WaitForLine when the process writing the log
// exited before the line appeared.
var ErrExited = errors.New("process exited")

// WaitForLine waits until a line of the file at path contains substr and
// returns that line. It fails when ctx ends, or when exited (may be nil) is
// closed and a last read of the file did not find the line.
func WaitForLine(ctx context.Context, path, substr string, exited <-chan struct{}) (string, error) {
	var off int64
	var partial []byte
	check := func() (string, bool) {
		f, err := os.Open(path)
		if err != nil {
			return "", false
		}
		defer f.Close()
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return "", false
		}
		data, _ := io.ReadAll(f)
		off += int64(len(data))
		partial = append(partial, data...)
		for {
			i := bytes.IndexByte(partial, '\n')
			if i < 0 {
				break
			}
			line := partial[:i]
			partial = partial[i+1:]
			if bytes.Contains(line, []byte(substr)) {
				return cleanLine(line), true
			}
		}
		// The line may be the last one, not yet terminated.
		if bytes.Contains(partial, []byte(substr)) {
			return cleanLine(partial), true
		}
		return "", false
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if l, ok := check(); ok {
			return l, nil
		}
		select {
		case <-ctx.Done():
			if l, ok := check(); ok {
				return l, nil
			}
			return "", fmt.Errorf("waiting for %q in %s: %w", substr, path, ctx.Err())
		case <-exited:
			if l, ok := check(); ok {
				return l, nil
			}
			return "", fmt.Errorf("waiting for %q in %s: %w", substr, path, ErrExited)
		case <-t.C:
		}
	}
}

func cleanLine(b []byte) string {
	return strings.TrimRight(string(b), "\r\n")
}

// Tail returns the last n lines of the file at path (a note if unreadable).
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Follow copies the file at path to w as it grows, until ctx ends or stop is
// closed (then it copies what is left and returns).
func Follow(ctx context.Context, path string, w io.Writer, stop <-chan struct{}) error {
	var off int64
	copyNew := func() {
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return
		}
		n, _ := io.Copy(w, f)
		off += n
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		copyNew()
		select {
		case <-ctx.Done():
			copyNew()
			return ctx.Err()
		case <-stop:
			copyNew()
			return nil
		case <-t.C:
		}
	}
}
