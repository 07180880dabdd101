package tlscert

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func pool(t *testing.T, pemFile string) []*x509.Certificate {
	t.Helper()
	certs, err := ReadCerts(pemFile)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

func serving(t *testing.T, root string) *tls.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(root, CertFile), filepath.Join(root, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return &pair
}

func mkTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, o := range PinOverlays {
		if err := os.MkdirAll(filepath.Join(root, "overlays", o), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCreateRotateChains(t *testing.T) {
	root := mkTree(t)
	hosts := []string{"10.0.2.1", "ww.example"}
	r, err := Create(root, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Pins) != 2 {
		t.Fatalf("pins written: %v", r.Pins)
	}
	for _, f := range []string{CAKeyFile, KeyFile} {
		fi, err := os.Stat(filepath.Join(root, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want 0600", f, fi.Mode(), err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(root, Dir)); fi.Mode().Perm() != 0o700 {
		t.Errorf("tls/ is %v, want 0700", fi.Mode())
	}
	if _, err := Create(root, hosts); !errors.Is(err, ErrExists) {
		t.Errorf("second Create: %v, want ErrExists", err)
	}
	oldPin := pool(t, filepath.Join(root, "overlays/wwinit", PinInImage))
	if err := Verify(serving(t, root), oldPin, hosts); err != nil {
		t.Fatalf("fresh certificate against its pin: %v", err)
	}
	if err := Verify(serving(t, root), oldPin, []string{"10.9.9.9"}); err == nil {
		t.Error("certificate verified for an address it does not name")
	}

	r2, err := Rotate(root, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if r2.CrossBy != r.CA.Subject.CommonName || r2.CA.Equal(r.CA) {
		t.Fatalf("rotate: cross by %q, new CA %q (old %q)", r2.CrossBy, r2.CA.Subject.CommonName, r.CA.Subject.CommonName)
	}
	newPin := pool(t, filepath.Join(root, "overlays/generic", PinInImage))
	if newPin[0].Equal(oldPin[0]) {
		t.Fatal("pin not replaced by rotate")
	}
	// A node that kept the old pin, and one that took the new one.
	if err := Verify(serving(t, root), oldPin, hosts); err != nil {
		t.Errorf("rotated certificate against the old pin (cross-signed): %v", err)
	}
	if err := Verify(serving(t, root), newPin, hosts); err != nil {
		t.Errorf("rotated certificate against the new pin: %v", err)
	}
	// Another server's CA verifies nothing here.
	other := mkTree(t)
	if _, err := Create(other, hosts); err != nil {
		t.Fatal(err)
	}
	if err := Verify(serving(t, root), pool(t, filepath.Join(other, CAFile)), hosts); err == nil {
		t.Error("certificate verified against another tree's CA")
	}

	// Two rotations: the first CA is no longer in any chain.
	if _, err := Rotate(root, hosts); err != nil {
		t.Fatal(err)
	}
	if err := Verify(serving(t, root), oldPin, hosts); err == nil {
		t.Error("a pin two rotations old still verifies")
	}
	if err := Verify(serving(t, root), newPin, hosts); err != nil {
		t.Errorf("the previous pin after one more rotation: %v", err)
	}
}

func TestImport(t *testing.T) {
	src := mkTree(t)
	hosts := []string{"10.0.2.1"}
	if _, err := Create(src, hosts); err != nil {
		t.Fatal(err)
	}
	root := mkTree(t)
	cert, key, ca := filepath.Join(src, CertFile), filepath.Join(src, KeyFile), filepath.Join(src, CAFile)
	if _, err := Import(root, cert, key, ca, []string{"10.0.2.99"}); err == nil {
		t.Error("imported a certificate that does not name the server's address")
	}
	other := mkTree(t)
	if _, err := Create(other, hosts); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(root, cert, filepath.Join(other, KeyFile), ca, hosts); err == nil {
		t.Error("imported a certificate with another key")
	}
	r, err := Import(root, cert, key, ca, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Imported || len(r.Pins) != 2 {
		t.Errorf("import result: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(root, CAKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("imported tree has a CA key: %v", err)
	}
	if _, err := Rotate(root, hosts); err != nil {
		t.Errorf("rotate after import (new CA, no cross-signing): %v", err)
	}
}
