package tlscert

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Reloader serves the tree's certificate and picks up a rotated one on the
// next handshake (a stat of both files per handshake, cheap beside the
// handshake itself), so `wwserver tls rotate` needs no restart.
type Reloader struct {
	root string
	mu   sync.Mutex
	cur  *tls.Certificate
	tag  string // mtimes and sizes of the pair cur came from
}

// NewReloader loads the serving pair of root; it fails when there is none.
func NewReloader(root string) (*Reloader, error) {
	r := &Reloader{root: root}
	if _, err := r.get(); err != nil {
		return nil, err
	}
	return r, nil
}

// Config is the server side TLS configuration (TLS 1.3 only: the one
// client is wwclient).
func (r *Reloader) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.get()
		},
	}
}

func (r *Reloader) get() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tag, err := r.stamp()
	if err == nil && tag == r.tag {
		return r.cur, nil
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(r.root, CertFile), filepath.Join(r.root, KeyFile))
	if err != nil {
		if r.cur != nil {
			return r.cur, nil // half-rotated or unreadable: keep serving the last good pair
		}
		return nil, fmt.Errorf("server certificate (wwserver tls rotate makes one): %w", err)
	}
	r.cur, r.tag = &pair, tag
	return r.cur, nil
}

func (r *Reloader) stamp() (string, error) {
	var tag string
	for _, f := range []string{CertFile, KeyFile} {
		fi, err := os.Stat(filepath.Join(r.root, f))
		if err != nil {
			return "", err
		}
		tag += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return tag, nil
}
