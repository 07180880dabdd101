package backoff

import (
	"math/rand/v2"
	"testing"
	"time"
)

func fixed(v float64) Rand { return func() float64 { return v } }

func TestBackoffDoublesAndCaps(t *testing.T) {
	// r = 0.999... gives the ceiling, r = 0 gives half of it
	hi := &Backoff{Min: time.Second, Max: 60 * time.Second, Rand: fixed(0.999999999)}
	lo := &Backoff{Min: time.Second, Max: 60 * time.Second, Rand: fixed(0)}
	wantCeil := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i, c := range wantCeil {
		c *= time.Second
		h, l := hi.Next(), lo.Next()
		if h > c || h < c-time.Millisecond {
			t.Fatalf("step %d: high %v, want ~%v", i, h, c)
		}
		if l != c/2 {
			t.Fatalf("step %d: low %v, want %v", i, l, c/2)
		}
	}
	if hi.Attempts() != len(wantCeil) {
		t.Fatalf("attempts %d", hi.Attempts())
	}
	hi.Reset()
	if d := hi.Next(); d > time.Second || d < time.Second/2 {
		t.Fatalf("after reset: %v", d)
	}
}

func TestBackoffBoundsRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := &Backoff{Min: 500 * time.Millisecond, Max: 30 * time.Second, Rand: r.Float64}
	for i := 0; i < 10000; i++ {
		ceil := b.Ceiling()
		d := b.Next()
		if d < ceil/2 || d > ceil || d > 30*time.Second {
			t.Fatalf("attempt %d: %v outside [%v, %v]", i, d, ceil/2, ceil)
		}
		if i%20 == 19 {
			b.Reset()
		}
	}
	// many attempts never overflow
	for i := 0; i < 200; i++ {
		if d := b.Next(); d <= 0 || d > 30*time.Second {
			t.Fatalf("overflow: %v", d)
		}
	}
}

func TestBackoffDegenerate(t *testing.T) {
	b := &Backoff{Rand: fixed(0.5)} // Min defaults to 1 s, Max to Min
	for i := 0; i < 5; i++ {
		if d := b.Next(); d != 750*time.Millisecond {
			t.Fatalf("got %v", d)
		}
	}
}

func TestJitterBounds(t *testing.T) {
	if got := Jitter(time.Minute, 0.1, fixed(0)); got != 54*time.Second {
		t.Fatalf("low: %v", got)
	}
	if got := Jitter(time.Minute, 0.1, fixed(0.5)); got != time.Minute {
		t.Fatalf("mid: %v", got)
	}
	if got := Jitter(time.Minute, 0.1, fixed(0.9999999)); got > 66*time.Second || got < 65*time.Second {
		t.Fatalf("high: %v", got)
	}
	if got := Jitter(time.Minute, 0, fixed(0)); got != time.Minute {
		t.Fatalf("no jitter: %v", got)
	}
	r := rand.New(rand.NewPCG(3, 4))
	var minSeen, maxSeen = time.Hour, time.Duration(0)
	for i := 0; i < 10000; i++ {
		d := Jitter(time.Minute, 0.1, r.Float64)
		if d < 54*time.Second || d > 66*time.Second {
			t.Fatalf("out of bounds: %v", d)
		}
		minSeen, maxSeen = min(minSeen, d), max(maxSeen, d)
	}
	// the spread is actually used (not a constant)
	if maxSeen-minSeen < 10*time.Second {
		t.Fatalf("jitter spread too small: %v..%v", minSeen, maxSeen)
	}
	if got := Jitter(time.Second, 5, fixed(0)); got != 0 {
		t.Fatalf("frac capped at 1: %v", got)
	}
}

func TestNewRandRange(t *testing.T) {
	r := NewRand()
	for i := 0; i < 1000; i++ {
		if v := r(); v < 0 || v >= 1 {
			t.Fatalf("%v", v)
		}
	}
}
