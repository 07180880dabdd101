package nodeconf

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/wwcluster/ww/server/nodeapi"
)

// DefaultCmdlinePath is where the kernel command line is read from.
const DefaultCmdlinePath = "/proc/cmdline"

// Cmdline holds the kernel command line parameters wwclient uses.
type Cmdline struct {
	WWID    string // booting MAC (normalised), from wwid=
	Server  string // wwserver=ADDR:PORT[,ADDR:PORT…]
	Root    string // wwroot=tmpfs|initramfs
	Init    string // init=PATH
	SELinux bool   // selinux=1
	// Image is wwimage=SHA256: a two-stage boot, the sha256 of the image
	// index wwclient fetches (see package chunkimage).
	Image string
	// TmpfsSize is wwtmpfs_size=: the tmpfs root's size= option ("" for
	// the kernel's default; BadTmpfsSize keeps an invalid value).
	TmpfsSize, BadTmpfsSize string
}

// ReadCmdline reads and parses the kernel command line at path.
func ReadCmdline(path string) (Cmdline, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Cmdline{}, fmt.Errorf("read kernel command line: %w", err)
	}
	return ParseCmdline(string(data)), nil
}

// SplitCmdline splits a kernel command line into words the way the kernel
// does: whitespace separated, double quotes group (and are removed), and
// everything after a lone "--" is for init and is not returned.
func SplitCmdline(s string) []string {
	var (
		words   []string
		cur     strings.Builder
		inQuote bool
		have    bool
	)
	flush := func() {
		if have {
			words = append(words, cur.String())
		}
		cur.Reset()
		have = false
	}
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n' || r == '\r'):
			flush()
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	flush()
	for i, w := range words {
		if w == "--" {
			return words[:i]
		}
	}
	return words
}

// ParseCmdline extracts the wwclient parameters; later occurrences win, as
// with the kernel. Invalid values are ignored (an invalid wwid= leaves WWID
// empty; a wwroot= other than tmpfs|initramfs is ignored).
func ParseCmdline(s string) Cmdline {
	var c Cmdline
	for _, w := range SplitCmdline(s) {
		key, val, ok := strings.Cut(w, "=")
		if !ok {
			continue
		}
		switch key {
		case nodeapi.ArgID:
			if mac, err := nodeapi.NormalizeMAC(strings.TrimSpace(val)); err == nil {
				c.WWID = mac
			}
		case nodeapi.ArgServer:
			c.Server = val
		case nodeapi.ArgRoot:
			if val == RootTmpfs || val == RootInitramfs {
				c.Root = val
			}
		case "init":
			c.Init = val
		case "selinux":
			c.SELinux = val == "1"
		case nodeapi.ArgImage:
			if validDigest(val) {
				c.Image = val
			}
		case nodeapi.ArgTmpfsSize:
			c.TmpfsSize, c.BadTmpfsSize = "", ""
			if ValidTmpfsSize(val) {
				c.TmpfsSize = val
			} else {
				c.BadTmpfsSize = val
			}
		}
	}
	return c
}

// Effective is the merged view of the configuration file, the kernel
// command line and command-line flags.
type Effective struct {
	Config  Config // the file (zero value when there was none)
	Server  string // flag > cmdline wwserver= > config server
	Root    string // cmdline wwroot= > config root > tmpfs
	Init    string // cmdline init= > /sbin/init
	MAC     string // config primary hwaddr > cmdline wwid=
	SELinux bool   // cmdline selinux=1
	Image   string // cmdline wwimage= (two-stage boot), "" otherwise
	WWID    string // cmdline wwid=: the MAC that booted (its URLs, its NIC)
	// TmpfsSize is wwtmpfs_size= (the tmpfs root's size= option), "" for
	// the kernel's default; BadTmpfsSize an invalid value (ignored).
	TmpfsSize, BadTmpfsSize string
}

// DefaultInit is the image's init when the command line names none.
const DefaultInit = "/sbin/init"

// Merge combines the file (may be nil), the kernel command line and an
// optional --server override. The command line wins over the file for
// server, root and init; the flag wins over both for server.
func Merge(c *Config, cl Cmdline, serverFlag string) Effective {
	var e Effective
	if c != nil {
		e.Config = *c
		e.Config.Network = append([]Network(nil), c.Network...)
	}
	e.Server = e.Config.Server
	if cl.Server != "" {
		e.Server = cl.Server
	}
	if serverFlag != "" {
		e.Server = serverFlag
	}
	e.Root = e.Config.RootMode()
	if cl.Root != "" {
		e.Root = cl.Root
	}
	e.Init = DefaultInit
	if cl.Init != "" {
		e.Init = cl.Init
	}
	if p, ok := e.Config.Primary(); ok && p.HWAddr != "" {
		e.MAC = p.HWAddr
	} else {
		e.MAC = cl.WWID
	}
	e.SELinux = cl.SELinux
	e.Image = cl.Image
	e.WWID = cl.WWID
	e.TmpfsSize, e.BadTmpfsSize = cl.TmpfsSize, cl.BadTmpfsSize
	return e
}

// ValidTmpfsSize reports whether s is a tmpfs size= value wwclient passes
// on: digits with an optional k, m or g suffix (not 0: unlimited), or 1 to
// 100 followed by %.
func ValidTmpfsSize(s string) bool {
	num, pct := strings.CutSuffix(s, "%")
	if !pct {
		num = strings.TrimRight(s, "kKmMgG")
		if len(s)-len(num) > 1 {
			return false
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n == 0 || (pct && n > 100) {
		return false
	}
	return true
}

// validDigest: 64 lower-case hex digits.
func validDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ServerURLs turns a comma-separated list of server addresses (wwserver=
// naming a cluster of servers, the one that served the boot first) into
// base URLs, each as ServerURL does.
func ServerURLs(list string) ([]*url.URL, error) {
	var out []*url.URL
	for _, s := range strings.Split(list, ",") {
		u, err := ServerURL(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// ServerURL turns "host:port", "host" or "http://host:port" into a base URL.
// A missing port defaults to 9873.
func ServerURL(server string) (*url.URL, error) {
	if server == "" {
		return nil, fmt.Errorf("no server address")
	}
	if strings.Contains(server, "://") {
		u, err := url.Parse(server)
		if err != nil {
			return nil, fmt.Errorf("invalid server URL %q: %w", server, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return nil, fmt.Errorf("invalid server URL %q: scheme must be http or https", server)
		}
		if u.Host == "" {
			return nil, fmt.Errorf("invalid server URL %q: no host", server)
		}
		if u.Port() == "" {
			u.Host = nodeapi.HostPort(u.Hostname(), nodeapi.DefaultPort)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawQuery, u.Fragment = "", ""
		return u, nil
	}
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		// no port (or a bare IPv6 address)
		host, port = strings.Trim(server, "[]"), strconv.Itoa(nodeapi.DefaultPort)
	}
	if host == "" || strings.ContainsAny(host, "/?#@ ") {
		return nil, fmt.Errorf("invalid server address %q", server)
	}
	return &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}, nil
}
