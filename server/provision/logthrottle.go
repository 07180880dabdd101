package provision

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultLogEvery is the window of repeated request log lines: the first of
// a kind is logged at once, the rest of the window become one summary line.
const DefaultLogEvery = 10 * time.Second

// logThrottle keeps per-request log lines (unknown MACs, refusals, errors)
// from flooding the log: 6,000 requests from random MACs are two lines, not
// 6,000. Lines are grouped by a kind chosen by the caller (a message and a
// reason, never a client-supplied value), so the table stays small.
//
// For each kind: the first line is logged when it happens and opens a
// window; lines within the window are counted; when the window ends with a
// count, one line with the message, "repeated" (the count), the window and
// the last line's attributes is logged and a new window opens. A window
// that ends with nothing counted closes the kind.
type logThrottle struct {
	log   *slog.Logger
	every time.Duration

	mu    sync.Mutex
	kinds map[string]*logWindow
}

type logWindow struct {
	level    slog.Level
	msg      string
	repeated int
	last     []any
	timer    *time.Timer
}

func newLogThrottle(log *slog.Logger, every time.Duration) *logThrottle {
	if every <= 0 {
		every = DefaultLogEvery
	}
	return &logThrottle{log: log, every: every, kinds: map[string]*logWindow{}}
}

// Log logs msg with args now, or counts it when a line of kind was logged
// in the current window.
func (t *logThrottle) Log(kind string, level slog.Level, msg string, args ...any) {
	t.mu.Lock()
	if w := t.kinds[kind]; w != nil {
		w.repeated++
		w.last = args
		t.mu.Unlock()
		return
	}
	w := &logWindow{level: level, msg: msg}
	t.kinds[kind] = w
	w.timer = time.AfterFunc(t.every, func() { t.endWindow(kind, w) })
	t.mu.Unlock()
	t.log.Log(context.Background(), level, msg, args...)
}

// endWindow logs the summary of w's window and opens the next one, or
// closes the kind when nothing was counted.
func (t *logThrottle) endWindow(kind string, w *logWindow) {
	t.mu.Lock()
	if t.kinds[kind] != w {
		t.mu.Unlock()
		return
	}
	n, last := w.repeated, w.last
	if n == 0 {
		delete(t.kinds, kind)
	} else {
		w.repeated, w.last = 0, nil
		w.timer = time.AfterFunc(t.every, func() { t.endWindow(kind, w) })
	}
	t.mu.Unlock()
	if n > 0 {
		t.summary(w, n, last)
	}
}

func (t *logThrottle) summary(w *logWindow, n int, last []any) {
	t.log.Log(context.Background(), w.level, w.msg, "repeated", n, "window", t.every.String(), slog.Group("last", last...))
}

// Flush logs every pending summary now and closes all kinds (at shutdown,
// and in tests).
func (t *logThrottle) Flush() {
	t.mu.Lock()
	kinds := t.kinds
	t.kinds = map[string]*logWindow{}
	t.mu.Unlock()
	for _, w := range kinds {
		w.timer.Stop()
		if w.repeated > 0 {
			t.summary(w, w.repeated, w.last)
		}
	}
}
