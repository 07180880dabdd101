package nodeapi

import (
	"fmt"
	"net"
	"strings"
)

// NormalizeMAC returns a 6-byte MAC in lower-case colon form
// (52:54:00:12:34:56); '-' separators are accepted. It is the one MAC form
// of the server (nodes.toml, requests, status) and of wwclient.
func NormalizeMAC(s string) (string, error) {
	if len(s) != 17 {
		return "", fmt.Errorf("%q is not a MAC address (want 6 bytes like 52:54:00:12:34:56)", s)
	}
	if isCanonicalMAC(s) {
		return s, nil // the usual case (every URL wwserver writes): no parse, no allocation
	}
	hw, err := net.ParseMAC(strings.ReplaceAll(s, "-", ":"))
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%q is not a MAC address (want 6 bytes like 52:54:00:12:34:56)", s)
	}
	return hw.String(), nil
}

// isCanonicalMAC reports whether s (17 bytes) is already in NormalizeMAC's
// form: six lower-case hex pairs joined by colons.
func isCanonicalMAC(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i%3 == 2 {
			if c != ':' {
				return false
			}
		} else if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
