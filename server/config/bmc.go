package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// BMC interfaces (nodes.X.bmc.interface).
const (
	BMCLanplus = "lanplus" // IPMI 2.0 over LAN (RMCP+), the default
	BMCRedfish = "redfish" // DMTF Redfish over HTTPS
)

// DefaultCipherSuite is the RMCP+ cipher suite used unless the node sets
// one: 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128), which every IPMI 2.0
// BMC must offer. Without choosing one, a client probes the suites first.
const DefaultCipherSuite = 3

// RedactedPassword stands for a BMC password in listings and JSON.
const RedactedPassword = "(redacted)"

// BMCEntry is one [nodes.X.bmc] or [profiles.X.bmc] table as written.
type BMCEntry struct {
	Address      *string `toml:"address"`
	Username     *string `toml:"username"`
	Password     *string `toml:"password"`
	PasswordFile *string `toml:"password_file"`
	Interface    *string `toml:"interface"`
	CipherSuite  *int    `toml:"cipher_suite"`
	Insecure     *bool   `toml:"insecure"`
}

// BMC is a node's resolved BMC settings. The password itself is not here:
// Node is template data, and a BMC password must never reach an overlay.
// Nodes.BMCPassword gives it to the power commands.
type BMC struct {
	Address  string `json:"address,omitempty"` // host[:port]; redfish also https://host[:port]
	Username string `json:"username,omitempty"`
	// Password is RedactedPassword when a password is set inline, else "".
	Password     string `json:"password,omitempty"`
	PasswordFile string `json:"password_file,omitempty"` // read when a power command runs
	Interface    string `json:"interface"`
	CipherSuite  int    `json:"cipher_suite,omitempty"` // lanplus only
	Insecure     bool   `json:"insecure,omitempty"`     // redfish: skip TLS verification
}

// BMCPassword is the inline BMC password of node name ("" when none; the
// node may have a password_file instead).
func (ns *Nodes) BMCPassword(name string) string {
	return ns.bmcPasswords[name]
}

// mergeBMC applies the set fields of src over dst (per field, as devices).
func mergeBMC(dst *BMCEntry, src *BMCEntry) {
	if src == nil {
		return
	}
	for _, f := range [...]struct{ d, s **string }{{&dst.Address, &src.Address}, {&dst.Username, &src.Username},
		{&dst.Interface, &src.Interface}} {
		if *f.s != nil {
			*f.d = *f.s
		}
	}
	// A password set anywhere replaces a password file set before it, and
	// the other way round: a node can override its profile's either way.
	if src.Password != nil {
		dst.Password, dst.PasswordFile = src.Password, nil
	}
	if src.PasswordFile != nil {
		dst.PasswordFile, dst.Password = src.PasswordFile, nil
	}
	if src.CipherSuite != nil {
		dst.CipherSuite = src.CipherSuite
	}
	if src.Insecure != nil {
		dst.Insecure = src.Insecure
	}
}

// resolveBMC turns merged settings into the node's BMC (nil when none is
// set) and its inline password.
func resolveBMC(m *BMCEntry) (*BMC, string) {
	if *m == (BMCEntry{}) {
		return nil, ""
	}
	b := &BMC{Interface: BMCLanplus}
	get := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	b.Address, b.Username, b.PasswordFile = get(m.Address), get(m.Username), get(m.PasswordFile)
	if m.Interface != nil && *m.Interface != "" {
		b.Interface = *m.Interface
	}
	if b.Interface == BMCLanplus {
		b.CipherSuite = DefaultCipherSuite
		if m.CipherSuite != nil {
			b.CipherSuite = *m.CipherSuite
		}
	}
	b.Insecure = m.Insecure != nil && *m.Insecure
	pw := get(m.Password)
	if pw != "" {
		b.Password = RedactedPassword
	}
	return b, pw
}

// checkBMCEntries checks every bmc table where it is written (a profile's
// too, before any node uses it).
func (r *resolver) checkBMCEntries() {
	r.eachWritten(func(key string, e *Entry) {
		if e.BMC != nil {
			checkBMCEntry(key+".bmc", e.BMC, r.fail)
		}
	})
}

// checkBMCEntry checks one bmc table's values; fail gets "KEY.bmc.FIELD".
func checkBMCEntry(key string, b *BMCEntry, fail func(key, format string, a ...any)) {
	if b.Interface != nil {
		if v := *b.Interface; v != BMCLanplus && v != BMCRedfish {
			fail(key+".interface", "must be %q or %q, got %q", BMCLanplus, BMCRedfish, v)
		}
	}
	if b.Address != nil && *b.Address != "" {
		if err := CheckBMCAddress(*b.Address); err != nil {
			fail(key+".address", "%v", err)
		}
	}
	if b.Password != nil && b.PasswordFile != nil {
		fail(key+".password_file", "give password or password_file, not both")
	}
	if b.PasswordFile != nil && strings.ContainsRune(*b.PasswordFile, 0) {
		fail(key+".password_file", "holds a NUL byte")
	}
	if b.CipherSuite != nil && (*b.CipherSuite < 0 || *b.CipherSuite > 17) {
		fail(key+".cipher_suite", "must be an IPMI 2.0 cipher suite, 0-17 (3 is the usual one), got %d", *b.CipherSuite)
	}
	if b.Username != nil && strings.ContainsAny(*b.Username, "\x00\n\r") {
		fail(key+".username", "holds a control character")
	}
}

// CheckBMCAddress reports why s cannot be a BMC address: host[:port], or
// for Redfish also https://host[:port] (a path is not allowed: the
// service root is always /redfish/v1).
func CheckBMCAddress(s string) error {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return fmt.Errorf("%q is not a URL: %v", s, err)
		}
		if u.Scheme != "https" && u.Scheme != "http" {
			return fmt.Errorf("%q: only http:// and https:// URLs (Redfish) are allowed", s)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("%q: give only scheme://host[:port] (no path, query or user)", s)
		}
		s = u.Host
	}
	host, port := s, ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else if strings.Count(s, ":") == 1 || strings.HasPrefix(s, "[") {
		return fmt.Errorf("%q is not host[:port]: %v", s, err)
	}
	if host == "" || strings.ContainsAny(host, " /\t\n\r\x00@") {
		return fmt.Errorf("%q: the host is empty or not a host name or address", s)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %q is not 1-65535", s, port)
		}
	}
	return nil
}

// bmc writes an entry's [HEAD.bmc] table (nothing when unset).
func (e *encoder) bmc(head string, b *BMCEntry) {
	if b == nil || *b == (BMCEntry{}) {
		return
	}
	e.line("[" + head + ".bmc]")
	e.str("address", b.Address)
	e.str("username", b.Username)
	e.str("password", b.Password)
	e.str("password_file", b.PasswordFile)
	e.str("interface", b.Interface)
	if b.CipherSuite != nil {
		e.line("cipher_suite = " + strconv.Itoa(*b.CipherSuite))
	}
	e.boolean("insecure", b.Insecure)
}

// sameBMC reports whether two bmc tables say the same (nil and empty alike).
func sameBMC(a, b *BMCEntry) bool {
	if a == nil {
		a = &BMCEntry{}
	}
	if b == nil {
		b = &BMCEntry{}
	}
	str := func(x, y *string) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return str(a.Address, b.Address) && str(a.Username, b.Username) && str(a.Password, b.Password) &&
		str(a.PasswordFile, b.PasswordFile) && str(a.Interface, b.Interface) &&
		(a.CipherSuite == nil) == (b.CipherSuite == nil) && (a.CipherSuite == nil || *a.CipherSuite == *b.CipherSuite) &&
		(a.Insecure == nil) == (b.Insecure == nil) && (a.Insecure == nil || *a.Insecure == *b.Insecure)
}

// bmcValue sets one key of a [X.bmc] table for the fast parser (false:
// leave the file to the TOML decoder). cipher_suite is read only as a
// plain decimal of up to three digits.
func bmcValue(b *BMCEntry, key, rest string) bool {
	switch key {
	case "insecure":
		v, ok := boolValue(rest)
		b.Insecure = &v
		return ok
	case "cipher_suite":
		end := 0
		for end < len(rest) && end < 4 && rest[end] >= '0' && rest[end] <= '9' {
			end++
		}
		if end == 0 || end > 3 || (end > 1 && rest[0] == '0') || !restIsComment(rest[end:]) {
			return false
		}
		n, _ := strconv.Atoi(rest[:end])
		b.CipherSuite = &n
		return true
	}
	v, ok := stringValue(rest)
	if !ok {
		return false
	}
	switch key {
	case "address":
		b.Address = &v
	case "username":
		b.Username = &v
	case "password":
		b.Password = &v
	case "password_file":
		b.PasswordFile = &v
	case "interface":
		b.Interface = &v
	default:
		return false
	}
	return true
}
