package hist

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsContiguous(t *testing.T) {
	for v := int64(0); v < 1<<20; v++ {
		i := index(v)
		if lower(i) > v || lower(i+1) <= v {
			t.Fatalf("value %d in bucket %d [%d,%d)", v, i, lower(i), lower(i+1))
		}
	}
	for _, v := range []int64{1 << 30, 1<<30 + 12345, 1<<39 - 1, maxValue} {
		i := index(v)
		if lower(i) > v || lower(i+1) <= v {
			t.Fatalf("value %d in bucket %d [%d,%d)", v, i, lower(i), lower(i+1))
		}
	}
}

func TestQuantilesAgainstSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	h := New()
	var all []int64
	for range 100000 {
		// log-uniform between 10 µs and 10 s
		v := int64(10e3 * math.Pow(10, r.Float64()*6))
		all = append(all, v)
		h.Record(time.Duration(v))
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := all[int(q*float64(len(all)))-1]
		got := int64(h.Quantile(q))
		if d := float64(got-want) / float64(want); d > 0.02 || d < -0.02 {
			t.Errorf("q%.3f: got %d want %d (%.2f%%)", q, got, want, d*100)
		}
	}
	if h.Max() != time.Duration(all[len(all)-1]) || h.Min() != time.Duration(all[0]) {
		t.Errorf("min/max %v/%v, want %v/%v", h.Min(), h.Max(), all[0], all[len(all)-1])
	}
	m := New()
	m.Merge(h)
	m.Merge(h)
	if m.Count() != 2*h.Count() || m.Quantile(0.5) != h.Quantile(0.5) {
		t.Errorf("merge: count %d, p50 %v vs %v", m.Count(), m.Quantile(0.5), h.Quantile(0.5))
	}
}
