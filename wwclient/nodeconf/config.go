// Package nodeconf reads the node's wwclient configuration: the rendered
// /etc/wwclient/wwclient.toml (see DESIGN.md, "Node side") and the kernel
// command line (wwid=, wwserver=, wwroot=, init=, selinux=).
package nodeconf

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/wwcluster/ww/server/nodeapi"
)

// DefaultPath is where the wwinit overlay renders the configuration.
const DefaultPath = "/etc/wwclient/wwclient.toml"

// DefaultUpdateInterval is used when update_interval is missing or zero.
const DefaultUpdateInterval = 60 * time.Second

// Root modes.
const (
	RootTmpfs     = nodeapi.RootTmpfs
	RootInitramfs = nodeapi.RootInitramfs
)

// Default privileged source port range for secure mode.
const (
	DefaultSourcePortMin = 600
	DefaultSourcePortMax = 1023
)

// Network is one [[network]] entry.
type Network struct {
	Name    string `toml:"name"`
	HWAddr  string `toml:"hwaddr"`
	IPAddr  string `toml:"ipaddr"`
	Netmask string `toml:"netmask"`
	Gateway string `toml:"gateway"`
	Primary bool   `toml:"primary"`
}

// Config is wwclient.toml. The first block of fields is the DESIGN.md
// contract; the optional tuning fields below it are wwclient extensions that
// the wwinit template does not need to render (defaults apply).
type Config struct {
	Node           string    `toml:"node"`
	Server         string    `toml:"server"`
	UpdateInterval int       `toml:"update_interval"` // seconds
	Secure         bool      `toml:"secure"`
	AssetKey       string    `toml:"asset_key"`
	Root           string    `toml:"root"`
	Network        []Network `toml:"network"`

	// Optional extensions.
	SourcePortMin  int   `toml:"source_port_min"`   // secure mode: lowest local port tried (default 600)
	SourcePortMax  int   `toml:"source_port_max"`   // secure mode: highest local port tried (default 1023)
	NetworkTimeout int   `toml:"network_timeout"`   // seconds to wait for the primary interface (default 120)
	ConfigureNet   *bool `toml:"configure_network"` // let wwclient set the address itself (default true)

	// TLS (wwserver.toml [tls]): heartbeats and the runtime overlay over
	// HTTPS at this port of each server, trusting only the pinned CA.
	TLSPort int    `toml:"tls_port"` // 0: plain HTTP
	TLSCA   string `toml:"tls_ca"`   // pin file (default DefaultTLSCA)
}

// DefaultTLSCA is where the wwinit overlay puts the server's pinned CA.
const DefaultTLSCA = "/etc/wwclient/tls-ca.pem"

// TLSPin is the pin file, defaulted.
func (c *Config) TLSPin() string {
	if c.TLSCA == "" {
		return DefaultTLSCA
	}
	return c.TLSCA
}

// WithTLS turns base URLs into https URLs at port of the same hosts.
func WithTLS(servers []*url.URL, port int) []*url.URL {
	out := make([]*url.URL, len(servers))
	for i, s := range servers {
		u := *s
		u.Scheme = "https"
		u.Host = net.JoinHostPort(s.Hostname(), strconv.Itoa(port))
		out[i] = &u
	}
	return out
}

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes and validates wwclient.toml content. Unknown keys are
// rejected so that typos do not silently fall back to defaults.
func Parse(data []byte) (*Config, error) {
	var c Config
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("unknown key(s): %s", strings.Join(keys, ", "))
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks field values and normalises MAC addresses.
func (c *Config) Validate() error {
	var errs []error
	if c.UpdateInterval < 0 {
		errs = append(errs, fmt.Errorf("update_interval: must not be negative, got %d", c.UpdateInterval))
	}
	switch c.Root {
	case "", RootTmpfs, RootInitramfs:
	default:
		errs = append(errs, fmt.Errorf("root: must be %q or %q, got %q", RootTmpfs, RootInitramfs, c.Root))
	}
	if c.Server != "" {
		if _, err := ServerURLs(c.Server); err != nil {
			errs = append(errs, fmt.Errorf("server: %w", err))
		}
	}
	for i := range c.Network {
		n := &c.Network[i]
		if n.HWAddr != "" {
			mac, err := nodeapi.NormalizeMAC(strings.TrimSpace(n.HWAddr))
			if err != nil {
				errs = append(errs, fmt.Errorf("network[%d] (%s): hwaddr: %w", i, n.Name, err))
			} else {
				n.HWAddr = mac
			}
		}
		if n.IPAddr != "" && net.ParseIP(n.IPAddr).To4() == nil {
			errs = append(errs, fmt.Errorf("network[%d] (%s): ipaddr: not an IPv4 address: %q", i, n.Name, n.IPAddr))
		}
		if n.Netmask != "" {
			if _, err := PrefixLen(n.Netmask); err != nil {
				errs = append(errs, fmt.Errorf("network[%d] (%s): netmask: %w", i, n.Name, err))
			}
		}
		if n.Gateway != "" && net.ParseIP(n.Gateway).To4() == nil {
			errs = append(errs, fmt.Errorf("network[%d] (%s): gateway: not an IPv4 address: %q", i, n.Name, n.Gateway))
		}
	}
	if c.SourcePortMin < 0 || c.SourcePortMax < 0 || c.SourcePortMin > 1023 || c.SourcePortMax > 1023 {
		errs = append(errs, fmt.Errorf("source_port_min/max: must be within 1-1023"))
	}
	if c.SourcePortMin != 0 && c.SourcePortMax != 0 && c.SourcePortMin > c.SourcePortMax {
		errs = append(errs, fmt.Errorf("source_port_min %d > source_port_max %d", c.SourcePortMin, c.SourcePortMax))
	}
	if c.TLSPort < 0 || c.TLSPort > 65535 {
		errs = append(errs, fmt.Errorf("tls_port: must be 0 (off) or a port, got %d", c.TLSPort))
	}
	if c.NetworkTimeout < 0 {
		errs = append(errs, fmt.Errorf("network_timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

// Interval is the update interval, defaulted.
func (c *Config) Interval() time.Duration {
	if c.UpdateInterval <= 0 {
		return DefaultUpdateInterval
	}
	return time.Duration(c.UpdateInterval) * time.Second
}

// RootMode is the configured root mode, defaulted to tmpfs.
func (c *Config) RootMode() string {
	if c.Root == "" {
		return RootTmpfs
	}
	return c.Root
}

// SourcePorts is the secure-mode local port range, defaulted.
func (c *Config) SourcePorts() (lo, hi int) {
	lo, hi = c.SourcePortMin, c.SourcePortMax
	if lo == 0 {
		lo = DefaultSourcePortMin
	}
	if hi == 0 {
		hi = DefaultSourcePortMax
	}
	if lo > hi {
		lo = hi
	}
	return lo, hi
}

// NetTimeout is how long to wait for the primary interface.
func (c *Config) NetTimeout() time.Duration {
	if c.NetworkTimeout <= 0 {
		return 120 * time.Second
	}
	return time.Duration(c.NetworkTimeout) * time.Second
}

// ConfigureNetwork reports whether wwclient may configure the primary
// interface itself (default true).
func (c *Config) ConfigureNetwork() bool {
	return c.ConfigureNet == nil || *c.ConfigureNet
}

// Primary returns the primary network entry: the one marked primary, else
// the first; ok is false when there is none.
func (c *Config) Primary() (Network, bool) {
	for _, n := range c.Network {
		if n.Primary {
			return n, true
		}
	}
	if len(c.Network) > 0 {
		return c.Network[0], true
	}
	return Network{}, false
}

// PrefixLen converts a dotted netmask (255.255.255.0) or a bare prefix
// length ("24") to a prefix length.
func PrefixLen(mask string) (int, error) {
	if n, err := strconv.Atoi(mask); err == nil {
		if n < 0 || n > 32 {
			return 0, fmt.Errorf("prefix length out of range: %d", n)
		}
		return n, nil
	}
	ip := net.ParseIP(mask).To4()
	if ip == nil {
		return 0, fmt.Errorf("not a netmask: %q", mask)
	}
	ones, bits := net.IPMask(ip).Size()
	if bits == 0 {
		return 0, fmt.Errorf("non-contiguous netmask: %q", mask)
	}
	return ones, nil
}
