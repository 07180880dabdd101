package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTimedLog: a line split over reads carries the time of its first
// byte and of its end; lines ended in one read carry that read's time;
// markers and the until line are noted when they end; bytes after the
// until line are not written.
func TestTimedLog(t *testing.T) {
	var out strings.Builder
	tl := newTimedLog(&out, "booted: node")
	s := time.Second
	reads := []struct {
		data string
		at   time.Duration
	}{
		{"Probing EDD... ", 1 * s},
		{"ok\r\nwwserver: starting the kernel\nwwin", 2 * s},
		{"", 3 * s},
		{"it: starting (wwclient dev)\n", 4 * s},
		{"wwinit: exec /sbin/init\nbooted: node n001\nafter\n", 5 * s},
	}
	done := false
	for i, r := range reads {
		if done {
			t.Fatalf("read %d: until line reported before it came", i)
		}
		done = tl.feed([]byte(r.data), r.at)
	}
	if !done {
		t.Fatal("until line not reported")
	}
	want := "   1.000    2.000 Probing EDD... ok\n" +
		"   2.000    2.000 wwserver: starting the kernel\n" +
		"   2.000    4.000 wwinit: starting (wwclient dev)\n" +
		"   5.000    5.000 wwinit: exec /sbin/init\n" +
		"   5.000    5.000 booted: node n001\n"
	if out.String() != want {
		t.Errorf("log:\n%s\nwant:\n%s", out.String(), want)
	}
	if want := []time.Duration{2 * s, 4 * s, 5 * s, 5 * s}; !slices.Equal(tl.marks, want) {
		t.Errorf("marks %v, want %v", tl.marks, want)
	}
	if got := phases(tl.marks); got != "kernel started 2.00, wwinit 4.00, exec init 5.00, until 5.00" {
		t.Errorf("phases: %q", got)
	}
}
