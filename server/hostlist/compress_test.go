package hostlist

import (
	"slices"
	"testing"
)

func TestCompress(t *testing.T) {
	cases := []struct {
		in   []string
		want string
	}{
		{[]string{"c003", "c001", "c002", "gpu1"}, "c[001-003],gpu1"},
		{[]string{"n1", "n2", "n3", "n5", "n10", "n11"}, "n[1-3,5,10-11]"},
		{[]string{"c01", "c1"}, "c1,c01"},
		{[]string{"head", "c9"}, "c9,head"},
		{nil, ""},
		{[]string{"c099", "c100", "c098"}, "c[098-100]"},
	}
	for _, c := range cases {
		got := Compress(c.in)
		if got != c.want {
			t.Errorf("Compress(%v) = %q, want %q", c.in, got, c.want)
			continue
		}
		if len(c.in) == 0 {
			continue
		}
		back, err := Expand(got)
		if err != nil {
			t.Errorf("Expand(%q): %v", got, err)
			continue
		}
		a, b := slices.Clone(c.in), back
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(a, b) {
			t.Errorf("round trip %v → %q → %v", c.in, got, back)
		}
	}
}
