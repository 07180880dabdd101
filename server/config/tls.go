package config

import (
	"net"
	"strconv"
)

// DefaultTLSPort is the HTTPS port of [tls] when its listen names none.
const DefaultTLSPort = 9874

// TLS is the [tls] section of wwserver.toml: the runtime overlay and
// heartbeats over HTTPS on a second port, with the served tree's
// certificate (tls/, made by `wwserver init` or `wwserver tls rotate`),
// which nodes pin. Boot stages stay on plain HTTP (listen).
type TLS struct {
	// Enabled serves HTTPS and refuses the runtime overlay and heartbeats
	// on plain HTTP.
	Enabled bool `toml:"enabled"`
	// Listen is the HTTPS listen address (default ":9874").
	Listen string `toml:"listen"`
	// Port is the HTTPS port nodes connect to, derived from Listen.
	Port int `toml:"-"`
}

// TLSPort is the HTTPS port nodes use, 0 when TLS is off.
func (s *Server) TLSPort() int {
	if !s.TLS.Enabled {
		return 0
	}
	return s.TLS.Port
}

// checkTLS defaults and checks the [tls] table.
func checkTLS(t *TLS, httpPort int, fail failFunc) {
	if t.Listen == "" {
		t.Listen = ":" + strconv.Itoa(DefaultTLSPort)
	}
	_, port, err := net.SplitHostPort(t.Listen)
	if err != nil {
		fail("tls.listen", "%q: %v", t.Listen, err)
		return
	}
	if t.Port, err = strconv.Atoi(port); err != nil || t.Port <= 0 || t.Port > 65535 {
		fail("tls.listen", "bad port %q", port)
		return
	}
	if t.Enabled && t.Port == httpPort {
		fail("tls.listen", "port %d is also listen's (plain HTTP): HTTPS needs its own port", t.Port)
	}
}
