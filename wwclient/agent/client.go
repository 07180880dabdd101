package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"time"
)

// ClientOptions configure NewHTTPClient.
type ClientOptions struct {
	// Secure makes every connection come from a privileged local port in
	// [PortMin, PortMax] (needs root or CAP_NET_BIND_SERVICE).
	Secure           bool
	PortMin, PortMax int
	DialTimeout      time.Duration // default 10 s
	// TLSPin, when set, is a PEM file of the CAs the server's certificate
	// must chain to (the system roots are never used); the client then
	// speaks only HTTPS, and reads the file again when it changes.
	TLSPin string
}

// NewHTTPClient returns the client used to talk to wwserver: no proxy, no
// transparent decompression (the overlay is gzip on purpose), short-lived
// idle connections (10,000 nodes must not each hold one open), and in
// secure mode a dialer that binds a privileged source port.
func NewHTTPClient(o ClientOptions) *http.Client {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	base := net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	dial := base.DialContext
	if o.Secure {
		dial = PrivilegedDialer(base, o.PortMin, o.PortMax)
	}
	build := func(tc *tls.Config) *http.Transport {
		return &http.Transport{
			Proxy:                 nil,
			DialContext:           dial,
			TLSClientConfig:       tc,
			DisableCompression:    true,
			MaxIdleConns:          2,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       5 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	if o.TLSPin != "" {
		return &http.Client{Transport: &pinnedTransport{path: o.TLSPin, build: build}}
	}
	return &http.Client{Transport: build(nil)}
}

// ErrNoSourcePort is returned when no port of the range could be bound.
var ErrNoSourcePort = errors.New("no free privileged source port")

// PrivilegedDialer returns a DialContext that binds a local port from
// [lo, hi], trying ports downward from a random start (so that nodes and
// retries spread over the range) with SO_REUSEADDR, until one binds.
// Errors other than "address in use" end the attempt at once. The local IP
// of base.LocalAddr, when set, is kept (a host with several addresses).
func PrivilegedDialer(base net.Dialer, lo, hi int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if lo <= 0 {
		lo = 600
	}
	if hi <= 0 || hi > 1023 {
		hi = 1023
	}
	if lo > hi {
		lo = hi
	}
	var localIP net.IP
	if a, ok := base.LocalAddr.(*net.TCPAddr); ok && a != nil {
		localIP = a.IP
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		n := hi - lo + 1
		start := rand.IntN(n)
		var lastErr error
		for i := 0; i < n; i++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			port := hi - (start+i)%n
			d := base
			d.LocalAddr = &net.TCPAddr{IP: localIP, Port: port}
			d.Control = func(network, address string, c syscall.RawConn) error {
				var serr error
				if err := c.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
				}); err != nil {
					return err
				}
				return serr
			}
			conn, err := d.DialContext(ctx, network, addr)
			if err == nil {
				return conn, nil
			}
			if errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL) {
				lastErr = err
				continue
			}
			return nil, err
		}
		return nil, fmt.Errorf("%w in %d-%d: %v", ErrNoSourcePort, lo, hi, lastErr)
	}
}
