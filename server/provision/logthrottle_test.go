package provision

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestUnknownMACLogsRateLimited (issue 9, weak point 12): requests from
// many unknown MACs log a line, not a line each.
func TestUnknownMACLogsRateLimited(t *testing.T) {
	e := newEnv(t, true)
	const n = 1000
	r := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		mac := fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", r.IntN(256), r.IntN(256), r.IntN(256), i>>8, i&0xff)
		resp, body := e.get("/ipxe/" + mac)
		wantCode(t, resp, body, http.StatusOK)
		resp, body = e.get("/kernel/" + mac)
		wantCode(t, resp, body, http.StatusNotFound)
	}
	logs := e.logs.String()
	// The first of each kind, and at most one summary per window (10 s) if
	// the run straddles one.
	for _, msg := range []string{"unknown MAC asked for an iPXE script", "msg=refused"} {
		if c := strings.Count(logs, msg); c < 1 || c > 2 {
			t.Errorf("%d requests logged %d lines of %q, want 1 or 2", n, c, msg)
		}
	}
	if c := strings.Count(logs, "\n"); c > 8 {
		t.Errorf("%d log lines for %d unknown-MAC requests:\n%.2000s", c, 2*n, logs)
	}
}

// recordHandler hands every log record to a channel.
type recordHandler struct{ ch chan slog.Record }

func (h recordHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error { h.ch <- r; return nil }
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h recordHandler) WithGroup(string) slog.Handler                 { return h }

// counted is how many lines a record stands for: its "repeated" count, or 1.
func counted(r slog.Record) (n int, summary bool) {
	n = 1
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "repeated" {
			n, summary = int(a.Value.Int64()), true
		}
		return true
	})
	return n, summary
}

func TestLogThrottleSummary(t *testing.T) {
	ch := make(chan slog.Record, 100)
	lt := newLogThrottle(slog.New(recordHandler{ch}), time.Hour)
	for i := range 500 {
		lt.Log("a", slog.LevelInfo, "kind a", "i", i)
	}
	for i := range 3 {
		lt.Log("b", slog.LevelWarn, "kind b", "i", i)
	}
	lt.Flush()
	close(ch)
	total := map[string]int{}
	lines := map[string]int{}
	for r := range ch {
		n, summary := counted(r)
		total[r.Message] += n
		lines[r.Message]++
		if summary && r.Message == "kind a" {
			var last string
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "last" {
					last = a.Value.String()
				}
				return true
			})
			if !strings.Contains(last, "i=499") {
				t.Errorf("summary's last line: %q", last)
			}
		}
	}
	if total["kind a"] != 500 || total["kind b"] != 3 || lines["kind a"] != 2 || lines["kind b"] != 2 {
		t.Errorf("lines %v, counted %v", lines, total)
	}
}

// A window that ends logs its summary by itself.
func TestLogThrottleWindowEnds(t *testing.T) {
	ch := make(chan slog.Record, 100)
	lt := newLogThrottle(slog.New(recordHandler{ch}), time.Millisecond)
	for range 3 {
		lt.Log("a", slog.LevelInfo, "kind a")
	}
	seen := 0
	for seen < 3 {
		select {
		case r := <-ch:
			n, _ := counted(r)
			seen += n
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 3 lines accounted for; no summary when the window ended", seen)
		}
	}
	if seen != 3 {
		t.Errorf("accounted for %d lines, want 3", seen)
	}
}
