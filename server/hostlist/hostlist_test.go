package hostlist

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	cases := []struct {
		in   string
		want string // names joined by " "
	}{
		{"n1", "n1"},
		{"gpu01", "gpu01"},
		{"c[001-003]", "c001 c002 c003"},
		{"c[001-010],gpu01", "c001 c002 c003 c004 c005 c006 c007 c008 c009 c010 gpu01"},
		{"n[1-3,7]", "n1 n2 n3 n7"},
		{"n[8-11]", "n8 n9 n10 n11"},
		{"n[08-11]", "n08 n09 n10 n11"},
		{"n[8-011]", "n008 n009 n010 n011"},
		{"n[0-2]", "n0 n1 n2"},
		{"n[098-101]", "n098 n099 n100 n101"},
		{"n[98-101]", "n98 n99 n100 n101"},
		{"n[5]", "n5"},
		{"n[05]", "n05"},
		{"r[1-2]n[01-02]", "r1n01 r1n02 r2n01 r2n02"},
		{"[1-2]x", "1x 2x"},
		{"a[1-2]b[3]c", "a1b3c a2b3c"},
		{"n1, n2 ,n3", "n1 n2 n3"},
		{"n[1 - 2, 4]", "n1 n2 n4"},
		{"n[1-3],n2,n1", "n1 n2 n3"},
		{"52:54:00:00:00:0a", "52:54:00:00:00:0a"},
	}
	for _, c := range cases {
		got, err := Expand(c.in)
		if err != nil {
			t.Errorf("Expand(%q): %v", c.in, err)
			continue
		}
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("Expand(%q) = %q, want %q", c.in, g, c.want)
		}
	}
}

func TestExpandErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", "empty name"},
		{"a,,b", "empty name"},
		{"a,", "empty name"},
		{"n[1-3", "unclosed '['"},
		{"n1-3]", "']' without '['"},
		{"n[[1]]", "nested '['"},
		{"n[]", "empty '[]'"},
		{"n[3-1]", "runs backwards"},
		{"n[a-b]", "not a number"},
		{"n[1-]", "needs a number on both sides"},
		{"n[-1]", "needs a number on both sides"},
		{"n[1,,2]", "needs a number on both sides"},
		{"n[1-2-3]", "not a number"},
		{"n[1-9999999999999999999]", "more than 18 digits"},
		{"n[0-100000]", "more than 100000 names"},
		{"a[1-1000]b[1-1000]", "more than 100000 names"},
		{"a[1-60000],b[1-60000]", "more than 100000 names"},
	}
	for _, c := range cases {
		got, err := Expand(c.in)
		if err == nil {
			t.Errorf("Expand(%q) = %d names, want error containing %q", c.in, len(got), c.want)
			continue
		}
		var he *Error
		if !errors.As(err, &he) {
			t.Errorf("Expand(%q): error %T is not *Error", c.in, err)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Expand(%q) error %q does not contain %q", c.in, err, c.want)
		}
	}
}

func TestExpandErrorOffset(t *testing.T) {
	_, err := Expand("c[1-2],d[5-3]")
	var he *Error
	if !errors.As(err, &he) {
		t.Fatalf("err = %v", err)
	}
	if he.Offset != 9 { // the "5-3" inside d[...]
		t.Errorf("offset = %d, want 9 (%v)", he.Offset, err)
	}
}

func TestExpandAtCap(t *testing.T) {
	got, err := Expand(fmt.Sprintf("n[1-%d]", MaxNames))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != MaxNames || got[MaxNames-1] != fmt.Sprintf("n%d", MaxNames) {
		t.Errorf("got %d names, last %q", len(got), got[len(got)-1])
	}
}

func TestExpandAll(t *testing.T) {
	got, err := ExpandAll([]string{"c[1-2]", "c2,gpu[01-02]"})
	if err != nil {
		t.Fatal(err)
	}
	if g := strings.Join(got, " "); g != "c1 c2 gpu01 gpu02" {
		t.Errorf("ExpandAll = %q", g)
	}
	if _, err := ExpandAll([]string{"ok", "bad["}); err == nil {
		t.Error("ExpandAll accepted a bad pattern")
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{
		"c[001-010],gpu01", "n[1-3,7]", "r[1-2]n[01-02]", "n[8-011]", "a,b", "",
		"n[", "n]", "n[[1]]", "n[3-1]", "n[1-]", " x , y ", "n[0-99999]x[1-2]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names, err := Expand(s)
		if err != nil {
			var he *Error
			if !errors.As(err, &he) || he.Offset < 0 || he.Offset > len(s) {
				t.Fatalf("Expand(%q): bad error %#v", s, err)
			}
			return
		}
		if len(names) == 0 || len(names) > MaxNames {
			t.Fatalf("Expand(%q) gave %d names", s, len(names))
		}
		seen := map[string]bool{}
		for _, n := range names {
			if n == "" || strings.ContainsAny(n, "[],") || seen[n] {
				t.Fatalf("Expand(%q) gave bad or duplicate name %q", s, n)
			}
			seen[n] = true
		}
		// A pattern without brackets or commas is a single literal name.
		if !strings.ContainsAny(s, "[],") && (len(names) != 1 || names[0] != strings.TrimSpace(s)) {
			t.Fatalf("Expand(%q) = %q, want the literal", s, names)
		}
	})
}
