// Package backoff provides capped exponential backoff with jitter and a
// jittered interval, both driven by an injected random source so that
// their bounds can be tested.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Rand returns a value in [0, 1). (*rand.Rand).Float64 satisfies it.
type Rand func() float64

// NewRand returns a Rand seeded from the runtime's random source. The
// returned function is not safe for concurrent use.
func NewRand() Rand {
	return rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())).Float64
}

// Backoff is capped exponential backoff with "equal jitter": the n-th delay
// d = min(Max, Min*2^n) is returned as a uniformly random value in [d/2, d].
// The zero value is not usable; set Min, Max and Rand.
type Backoff struct {
	Min, Max time.Duration
	Rand     Rand
	attempt  int
}

// Next returns the next delay and advances the attempt counter.
func (b *Backoff) Next() time.Duration {
	d := b.Ceiling()
	if b.attempt < 62 {
		b.attempt++
	}
	half := d / 2
	return half + time.Duration(b.Rand()*float64(d-half))
}

// Ceiling is the upper bound of the next delay.
func (b *Backoff) Ceiling() time.Duration {
	d := b.Min
	if d <= 0 {
		d = time.Second
	}
	maxd := b.Max
	if maxd < d {
		maxd = d
	}
	for i := 0; i < b.attempt && d < maxd; i++ {
		d *= 2
	}
	if d > maxd {
		d = maxd
	}
	return d
}

// Attempts is the number of delays handed out since the last Reset.
func (b *Backoff) Attempts() int { return b.attempt }

// Reset starts over at Min.
func (b *Backoff) Reset() { b.attempt = 0 }

// Jitter returns d changed by a uniformly random fraction in
// [-frac, +frac] of itself: with frac 0.1 a 60 s interval becomes
// 54..66 s, so that many nodes booted together drift apart.
func Jitter(d time.Duration, frac float64, r Rand) time.Duration {
	if frac <= 0 || d <= 0 {
		return d
	}
	if frac > 1 {
		frac = 1
	}
	delta := (r()*2 - 1) * frac * float64(d)
	return d + time.Duration(delta)
}
