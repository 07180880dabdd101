package health

import (
	"errors"
	"testing"
	"time"
)

func TestRegistry(t *testing.T) {
	r := New()
	if list, ok := r.Components(); !ok || len(list) != 0 {
		t.Fatalf("empty registry: %v %v", list, ok)
	}
	r.Report("status", nil)
	r.Report("build", errors.New("write state/x: no space left on device"))
	list, ok := r.Components()
	if ok || len(list) != 2 || list[0].Name != "build" || list[0].OK || list[0].Reason == "" || !list[1].OK {
		t.Fatalf("components %+v healthy %v", list, ok)
	}
	r.Report("build", nil)
	if _, ok := r.Components(); !ok {
		t.Error("still degraded after the component recovered")
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLimiter(time.Minute, func() time.Time { return now })
	if !l.Allow("a") || l.Allow("a") || !l.Allow("b") {
		t.Fatal("first of each key must pass, repeats must not")
	}
	now = now.Add(59 * time.Second)
	if l.Allow("a") {
		t.Error("repeat within the minute passed")
	}
	now = now.Add(time.Second)
	if !l.Allow("a") {
		t.Error("repeat after a minute blocked")
	}
	for i := range 3 * maxLimiterKeys {
		l.Allow(string(rune(i)))
	}
	if len(l.last) > maxLimiterKeys {
		t.Errorf("limiter holds %d keys", len(l.last))
	}
}

// TestLimiterCounts: the count of held-back messages is reported with the
// next one let through, then starts again (tftp's "refused_unlogged").
func TestLimiterCounts(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLimiter(time.Second, func() time.Time { return now })
	if n, ok := l.AllowCount("busy"); !ok || n != 0 {
		t.Fatalf("first: %d, %v", n, ok)
	}
	for range 3 {
		if _, ok := l.AllowCount("busy"); ok {
			t.Fatal("repeat within the second passed")
		}
	}
	now = now.Add(time.Second)
	if n, ok := l.AllowCount("busy"); !ok || n != 3 {
		t.Fatalf("after a second: %d, %v; want 3, true", n, ok)
	}
	now = now.Add(time.Second)
	if n, ok := l.AllowCount("busy"); !ok || n != 0 {
		t.Fatalf("count not reset: %d, %v", n, ok)
	}
}
