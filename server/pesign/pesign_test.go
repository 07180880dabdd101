package pesign

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

// minimalPE builds a PE32+ image with no sections whose certificate table
// entry points at a WIN_CERTIFICATE of type typ (typ 0: no table).
func minimalPE(t *testing.T, typ uint16) []byte {
	t.Helper()
	var b bytes.Buffer
	dos := make([]byte, 0x40)
	copy(dos, "MZ")
	binary.LittleEndian.PutUint32(dos[0x3c:], 0x40)
	b.Write(dos)
	b.WriteString("PE\x00\x00")
	coff := make([]byte, 20)
	binary.LittleEndian.PutUint16(coff[0:], 0x8664) // AMD64
	binary.LittleEndian.PutUint16(coff[16:], 240)   // SizeOfOptionalHeader: 112 + 16*8
	b.Write(coff)
	opt := make([]byte, 240)
	binary.LittleEndian.PutUint16(opt[0:], 0x20b)
	binary.LittleEndian.PutUint32(opt[108:], 16) // NumberOfRvaAndSizes
	b.Write(opt)
	if typ != 0 {
		off := b.Len()
		cert := make([]byte, 16)
		binary.LittleEndian.PutUint32(cert[0:], 16)
		binary.LittleEndian.PutUint16(cert[4:], certRevision2)
		binary.LittleEndian.PutUint16(cert[6:], typ)
		b.Write(cert)
		data := b.Bytes()
		entry := 0x40 + 4 + 20 + 112 + securityDir*8
		binary.LittleEndian.PutUint32(data[entry:], uint32(off))
		binary.LittleEndian.PutUint32(data[entry+4:], 16)
	}
	return b.Bytes()
}

func TestSigned(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want bool
	}{
		{"no table", minimalPE(t, 0), false},
		{"authenticode", minimalPE(t, certPKCSSigned), true},
		{"other certificate type", minimalPE(t, 0x0001), false}, // X.509, not Authenticode
	} {
		got, err := Signed(bytes.NewReader(tc.data), int64(len(tc.data)))
		if err != nil || got != tc.want {
			t.Errorf("%s: Signed = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

func TestSignedErrors(t *testing.T) {
	if _, err := Signed(bytes.NewReader([]byte("\x7fELF not a PE")), 13); !errors.Is(err, ErrNotPE) {
		t.Errorf("ELF: err %v, want ErrNotPE", err)
	}
	// A table entry pointing past the end of the file.
	data := minimalPE(t, certPKCSSigned)
	short := data[:len(data)-8]
	if ok, err := Signed(bytes.NewReader(short), int64(len(short))); err == nil || ok {
		t.Errorf("truncated table: ok %v, err %v; want an error", ok, err)
	}
}

func TestStrip(t *testing.T) {
	data := minimalPE(t, certPKCSSigned)
	out, err := Strip(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(data)-16 {
		t.Errorf("stripped length %d, want %d", len(out), len(data)-16)
	}
	if ok, err := Signed(bytes.NewReader(out), int64(len(out))); ok || err != nil {
		t.Errorf("stripped image: signed %v, err %v", ok, err)
	}
	if ok, _ := Signed(bytes.NewReader(data), int64(len(data))); !ok {
		t.Error("Strip modified its input")
	}
	if _, err := Strip([]byte("short")); !errors.Is(err, ErrNotPE) {
		t.Errorf("Strip of a non-PE: %v", err)
	}
}

// TestDebianBinaries checks the real signed binaries when they are on this
// machine (make bootloaders puts them under build/secureboot).
func TestDebianBinaries(t *testing.T) {
	dir := os.Getenv("WW_SECUREBOOT")
	if dir == "" {
		dir = "../../build/secureboot"
	}
	for _, name := range []string{"shimx64.efi.signed", "grubnetx64.efi.signed"} {
		data, err := os.ReadFile(dir + "/" + name)
		if err != nil {
			t.Skipf("no %s (make bootloaders): %v", name, err)
		}
		if ok, err := Signed(bytes.NewReader(data), int64(len(data))); !ok || err != nil {
			t.Errorf("%s: signed %v, err %v", name, ok, err)
		}
		out, err := Strip(data)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := Signed(bytes.NewReader(out), int64(len(out))); ok || err != nil {
			t.Errorf("%s stripped: signed %v, err %v", name, ok, err)
		}
	}
}
