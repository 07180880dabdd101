// Package hist is a small log-linear latency histogram in the spirit of
// HdrHistogram: values (nanoseconds) are counted in buckets whose width is at
// most 1/64 of their lower bound, so any reported quantile is within ~1.6% of
// the true value, whatever the range. Recording is a few shifts and an
// increment; a Hist is not safe for concurrent use (keep one per goroutine
// and Merge them).
package hist

import (
	"math/bits"
	"time"
)

// subBits sets the precision: 2^(subBits-1) buckets per power of two.
const subBits = 7

// maxValue is the largest value kept apart; larger ones count as it (~18 min).
const maxValue = int64(1) << 40

var numBuckets = index(maxValue) + 1

// Hist counts durations.
type Hist struct {
	counts []uint64
	n      uint64
	sum    int64
	min    int64
	max    int64
}

// New returns an empty histogram.
func New() *Hist {
	return &Hist{counts: make([]uint64, numBuckets), min: -1}
}

func index(v int64) int {
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits
	return e<<(subBits-1) + int(v>>e)
}

// lower is the smallest value counted in bucket i.
func lower(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	e := i>>(subBits-1) - 1
	m := int64(i - e<<(subBits-1))
	return m << e
}

// Record counts one duration (negative counts as zero).
func (h *Hist) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if v > maxValue {
		v = maxValue
	}
	h.counts[index(v)]++
	h.n++
	h.sum += v
	if h.min < 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds o's counts to h.
func (h *Hist) Merge(o *Hist) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if h.min < 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
}

// Count is the number of recorded values.
func (h *Hist) Count() uint64 { return h.n }

// Min and Max are exact.
func (h *Hist) Min() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.min)
}

// Max is the largest recorded value.
func (h *Hist) Max() time.Duration { return time.Duration(h.max) }

// Mean is exact.
func (h *Hist) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / int64(h.n))
}

// Quantile returns the value below which a fraction q (0..1) of the recorded
// values lie: the middle of the bucket holding that rank, clamped to the
// exact min and max.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return time.Duration(h.min)
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := lower(i), lower(i+1)
			v := lo + (hi-lo-1)/2
			if v < h.min {
				v = h.min
			}
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}
