// Package tlscert keeps the served tree's TLS material: a CA (ECDSA P-256,
// self-signed) that nodes pin, and the serving certificate it signs.
//
//	tls/ca.pem, tls/ca.key          the CA nodes trust (key 0600)
//	tls/server.pem, tls/server.key  serving chain and key (key 0600)
//	overlays/{wwinit,generic}/etc/wwclient/tls-ca.pem   the pin nodes get
//
// Rotation makes a new CA and serving key; the new CA is also cross-signed
// by the old one and that certificate is sent after the serving one, so a
// node still pinning the old CA verifies the chain leaf → new CA (cross) →
// old CA, while a node that took the new pin verifies leaf → new CA. Nodes
// keep working through one rotation without a reboot; the pin in the
// system overlay (next boot) and the runtime overlay (next sync, over TLS)
// moves them to the new CA.
package tlscert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/wwcluster/ww/server/atomicfile"
)

// Paths, relative to the served tree.
const (
	Dir        = "tls"
	CAFile     = "tls/ca.pem"
	CAKeyFile  = "tls/ca.key"
	CertFile   = "tls/server.pem"
	KeyFile    = "tls/server.key"
	PinInImage = "etc/wwclient/tls-ca.pem" // where wwclient reads its pin
)

// PinOverlays are the overlays the pin is written into when they exist:
// the system overlay nodes boot with, and the runtime overlay that
// reaches running nodes.
var PinOverlays = []string{"wwinit", "generic"}

// Validity of what Create and Rotate make.
const (
	CAValidity     = 20 * 365 * 24 * time.Hour
	ServerValidity = 10 * 365 * 24 * time.Hour
)

// ErrExists is returned by Create when the tree already has a CA.
var ErrExists = errors.New("TLS certificate already exists")

// Result says what was written.
type Result struct {
	CA       *x509.Certificate
	Leaf     *x509.Certificate
	Pins     []string // pin files written
	CrossBy  string   // subject of the old CA that cross-signed the new one, if any
	Imported bool
}

// Create makes a CA and a serving certificate for hosts (IP addresses or
// DNS names) in root, and writes the pin. It refuses a tree that has a CA.
func Create(root string, hosts []string) (*Result, error) {
	if _, err := os.Stat(filepath.Join(root, CAFile)); err == nil {
		return nil, fmt.Errorf("%s: %w (wwserver tls rotate makes a new one)", filepath.Join(root, CAFile), ErrExists)
	}
	return issue(root, hosts, nil)
}

// Rotate makes a new CA and serving certificate. When the tree has a CA
// with its key, the new CA is cross-signed by it (see the package comment);
// without one, Rotate is Create.
func Rotate(root string, hosts []string) (*Result, error) {
	old, err := loadCA(root)
	if errors.Is(err, os.ErrNotExist) {
		return issue(root, hosts, nil)
	}
	if err != nil {
		return nil, err
	}
	return issue(root, hosts, old)
}

// authority is a CA certificate with its key.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func loadCA(root string) (*authority, error) {
	certs, err := ReadCerts(filepath.Join(root, CAFile))
	if err != nil {
		return nil, err
	}
	key, err := readKey(filepath.Join(root, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("%w (an imported certificate has no CA key: import a new one instead)", err)
	}
	return &authority{cert: certs[0], key: key}, nil
}

// issue makes a CA, cross-signed by old when given, and a serving
// certificate signed by it, and writes them and the pins.
func issue(root string, hosts []string, old *authority) (*Result, error) {
	if len(hosts) == 0 {
		return nil, errors.New("no address for the server certificate")
	}
	now := time.Now()
	ca, err := newCA(now)
	if err != nil {
		return nil, err
	}
	leafDER, leafKey, err := newLeaf(ca, hosts, now)
	if err != nil {
		return nil, err
	}
	chain := [][]byte{leafDER}
	res := &Result{CA: ca.cert}
	if old != nil {
		cross, err := crossSign(ca, old, now)
		if err != nil {
			return nil, err
		}
		chain = append(chain, cross)
		res.CrossBy = old.cert.Subject.CommonName
	}
	if res.Leaf, err = x509.ParseCertificate(leafDER); err != nil {
		return nil, err
	}
	if err := writeAll(root, ca.cert.Raw, ca.key, chain, leafKey); err != nil {
		return nil, err
	}
	res.Pins, err = WritePins(root, pemCert(ca.cert.Raw))
	return res, err
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func newCA(now time.Time) (*authority, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl, err := caTemplate(key, now)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key}, nil
}

// caTemplate is the CA's certificate; its subject names the moment it was
// made, so every CA generation has its own name (chains stay unambiguous).
func caTemplate(key crypto.Signer, now time.Time) (*x509.Certificate, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	ski, err := keyID(key.Public())
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "wwserver CA " + now.UTC().Format("20060102T150405.000Z"), Organization: []string{"wwserver"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
		SubjectKeyId:          ski,
	}, nil
}

// crossSign is ca's certificate issued by old: same subject and key, old's
// issuer. It expires with old.
func crossSign(ca, old *authority, now time.Time) ([]byte, error) {
	tmpl, err := caTemplate(ca.key, now)
	if err != nil {
		return nil, err
	}
	tmpl.Subject = ca.cert.Subject
	tmpl.SubjectKeyId = ca.cert.SubjectKeyId
	tmpl.MaxPathLen, tmpl.MaxPathLenZero = 0, true
	if old.cert.NotAfter.Before(tmpl.NotAfter) {
		tmpl.NotAfter = old.cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, old.cert, ca.key.Public(), old.key)
	if err != nil {
		return nil, fmt.Errorf("cross-sign the new CA with the old one: %w", err)
	}
	return der, nil
}

func newLeaf(ca *authority, hosts []string, now time.Time) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"wwserver"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(ServerValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("create server certificate: %w", err)
	}
	return der, key, nil
}

func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pemKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

type tlsFile struct {
	name string
	data []byte
	perm os.FileMode
}

// writeAll writes the CA, its key (nil for an imported chain) and the
// serving chain and key; keys 0600 in a 0700 tls/, each file atomically.
// The serving files go last, so a server reloading sees a complete set.
func writeAll(root string, caDER []byte, caKey crypto.Signer, chain [][]byte, key crypto.Signer) error {
	dir := filepath.Join(root, Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	keyPEM, err := pemKey(key)
	if err != nil {
		return err
	}
	var chainPEM []byte
	for _, c := range chain {
		chainPEM = append(chainPEM, pemCert(c)...)
	}
	files := []tlsFile{{CAFile, pemCert(caDER), 0o644}}
	if caKey != nil {
		caKeyPEM, err := pemKey(caKey)
		if err != nil {
			return err
		}
		files = append(files, tlsFile{CAKeyFile, caKeyPEM, 0o600})
	} else if err := os.Remove(filepath.Join(root, CAKeyFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	files = append(files, tlsFile{KeyFile, keyPEM, 0o600}, tlsFile{CertFile, chainPEM, 0o644})
	for _, f := range files {
		if err := atomicfile.WriteFile(filepath.Join(root, f.name), f.data, f.perm); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}

// WritePins writes pin (PEM certificates) to PinInImage in each of
// PinOverlays that exists in root, and returns the files written.
func WritePins(root string, pin []byte) ([]string, error) {
	var out []string
	for _, o := range PinOverlays {
		dir := filepath.Join(root, "overlays", o)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		p := filepath.Join(dir, PinInImage)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return out, err
		}
		if err := atomicfile.WriteFile(p, pin, 0o644); err != nil {
			return out, fmt.Errorf("write pin %s: %w", p, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// Import takes a serving certificate chain and key made elsewhere, and the
// CA that signed it (the pin), after checking that the key matches and the
// chain verifies against the CA for every host.
func Import(root, certFile, keyFile, caFile string, hosts []string) (*Result, error) {
	chain, err := ReadCerts(certFile)
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, err
	}
	cas, err := ReadCerts(caFile)
	if err != nil {
		return nil, err
	}
	pair := tls.Certificate{PrivateKey: key}
	for _, c := range chain {
		pair.Certificate = append(pair.Certificate, c.Raw)
	}
	if err := Verify(&pair, cas, hosts); err != nil {
		return nil, err
	}
	if !publicKeyEqual(chain[0].PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s does not belong to the certificate in %s", keyFile, certFile)
	}
	if err := writeAll(root, cas[0].Raw, nil, pair.Certificate, key); err != nil {
		return nil, err
	}
	var pin []byte
	for _, c := range cas {
		pin = append(pin, pemCert(c.Raw)...)
	}
	pins, err := WritePins(root, pin)
	return &Result{CA: cas[0], Leaf: chain[0], Pins: pins, Imported: true}, err
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// ParseLeaf is pair's first certificate.
func ParseLeaf(pair *tls.Certificate) (*x509.Certificate, error) {
	if len(pair.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	return x509.ParseCertificate(pair.Certificate[0])
}

// Verify checks that pair's chain verifies against cas for every host.
func Verify(pair *tls.Certificate, cas []*x509.Certificate, hosts []string) error {
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	var certs []*x509.Certificate
	for _, der := range pair.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	for _, h := range hosts {
		if _, err := certs[0].Verify(x509.VerifyOptions{DNSName: h, Roots: pool, Intermediates: inter}); err != nil {
			return fmt.Errorf("server certificate for %s: %w", h, err)
		}
	}
	return nil
}

// ReadCerts reads the PEM certificates of a file.
func ReadCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return out, nil
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	var key any
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a private key", path, b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type %T", path, key)
	}
	return s, nil
}
