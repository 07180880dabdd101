package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
)

// ErrPlainHTTP: a pinned client was asked for a URL that is not https.
var ErrPlainHTTP = errors.New("TLS is configured (tls_port): refusing a plain HTTP request")

// pinnedTransport is HTTPS trusting only the CAs of one PEM file. The file
// is looked at (stat) before each request and read again when it changed:
// a rotated pin arrives with the runtime overlay, applied while the agent
// runs, and is used from the next request on. A pin that cannot be read
// keeps the last good one; with none there is no request.
type pinnedTransport struct {
	path  string
	build func(*tls.Config) *http.Transport

	mu  sync.Mutex
	tag string // size and mtime of the file rt was built from
	rt  *http.Transport
}

func (p *pinnedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%w: %s", ErrPlainHTTP, req.URL.Redacted())
	}
	rt, err := p.transport()
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &localError{err}
	}
	return rt.RoundTrip(req)
}

func (p *pinnedTransport) transport() (*http.Transport, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fi, err := os.Stat(p.path)
	if err == nil {
		tag := fmt.Sprintf("%d/%d", fi.Size(), fi.ModTime().UnixNano())
		if tag == p.tag && p.rt != nil {
			return p.rt, nil
		}
		var pool *x509.CertPool
		if pool, err = readPool(p.path); err == nil {
			if p.rt != nil {
				p.rt.CloseIdleConnections()
			}
			p.rt = p.build(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13})
			p.tag = tag
			return p.rt, nil
		}
	}
	if p.rt != nil {
		return p.rt, nil
	}
	return nil, fmt.Errorf("TLS pin (the server's CA, from the system overlay): %w", err)
}

func readPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}
