package nodeapi

import (
	"net"
	"regexp"
	"strings"
	"testing"
)

var canonicalMAC = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)

// FuzzNormalizeMAC: the one parser of MACs from URLs and nodes.toml.
// Invariants: no panic; an accepted MAC is canonical (lower-case, colons,
// 6 bytes), names the same address as the input, and normalises to itself;
// the three spellings of a canonical MAC are all accepted.
func FuzzNormalizeMAC(f *testing.F) {
	for _, s := range []string{
		"52:54:00:12:34:56", "52-54-00-12-34-56", "52:54:00:AB:cd:Ef", "5254.0012.3456",
		"52:54:00:12:34:5", "52:54:00:12:34:567", "52:54-00:12:34:56", "00:00:00:00:00:00:00:00",
		"zz:54:00:12:34:56", "52:54:00:12:34:5\x00", ":::::::::::::::::", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mac, err := NormalizeMAC(s)
		if err != nil {
			if mac != "" {
				t.Fatalf("%q: error %v with a result %q", s, err, mac)
			}
			if canonicalMAC.MatchString(strings.ToLower(s)) {
				t.Fatalf("%q: a canonical MAC refused: %v", s, err)
			}
			return
		}
		if !canonicalMAC.MatchString(mac) {
			t.Fatalf("%q → %q: not canonical", s, mac)
		}
		hw, perr := net.ParseMAC(strings.ReplaceAll(s, "-", ":"))
		if perr != nil || hw.String() != mac {
			t.Fatalf("%q → %q, net.ParseMAC says %v %v", s, mac, hw, perr)
		}
		again, err := NormalizeMAC(mac)
		if err != nil || again != mac {
			t.Fatalf("%q → %q → %q, %v: not idempotent", s, mac, again, err)
		}
		for _, spelling := range []string{strings.ToUpper(mac), strings.ReplaceAll(mac, ":", "-")} {
			if got, err := NormalizeMAC(spelling); err != nil || got != mac {
				t.Fatalf("%q: %q, %v; want %q", spelling, got, err, mac)
			}
		}
	})
}
