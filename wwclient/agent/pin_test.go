package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, BasicConstraintsValid: true, IsCA: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePin(t *testing.T, path string, srv *httptest.Server) {
	t.Helper()
	raw := srv.Certificate().Raw
	if srv.TLS != nil && len(srv.TLS.Certificates) > 0 {
		raw = srv.TLS.Certificates[0].Certificate[0]
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: raw})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// A new mtime even within the file system's timestamp granularity.
	later := time.Now().Add(time.Duration(len(data)) * time.Second)
	if err := os.Chtimes(tmp, later, later); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestPinnedClient: HTTPS trusting only the pin file, read again when it
// changes; no plain HTTP; a missing pin is a local error.
func TestPinnedClient(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv := httptest.NewTLSServer(ok)
	defer srv.Close()
	// httptest's servers share one certificate: another one of our own.
	other := httptest.NewUnstartedServer(ok)
	other.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	other.StartTLS()
	defer other.Close()
	pin := filepath.Join(t.TempDir(), "tls-ca.pem")
	c := NewHTTPClient(ClientOptions{TLSPin: pin})
	get := func(url string) error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}

	err := get(srv.URL)
	var le *localError
	if !errors.As(err, &le) {
		t.Fatalf("no pin file: %v, want a local error", err)
	}
	writePin(t, pin, other)
	if err := get(other.URL); err != nil {
		t.Fatalf("the pinned server itself: %v", err)
	}
	if err := get(srv.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("another server's certificate pinned: %v", err)
	}
	writePin(t, pin, srv)
	if err := get(srv.URL); err != nil {
		t.Fatalf("after the pin changed: %v", err)
	}
	if err := get(strings.Replace(srv.URL, "https://", "http://", 1)); !errors.Is(err, ErrPlainHTTP) {
		t.Errorf("plain http with a pin: %v", err)
	}
	if err := os.WriteFile(pin, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := get(srv.URL); err != nil {
		t.Errorf("an unreadable pin should keep the last good one: %v", err)
	}
}
