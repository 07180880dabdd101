// Package pesign tells whether a PE/COFF file (a UEFI binary: a Linux
// kernel's EFI stub, shim, GRUB) carries an Authenticode signature, which
// UEFI Secure Boot needs: firmware checks shim's, shim GRUB's, and GRUB
// (through shim) the kernel's. It only looks for the signature, it does
// not verify it against any key: `wwserver check` uses it to say that a
// node booting with GRUB (Secure Boot) has a kernel that will be refused.
package pesign

import (
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// securityDir is the index of the certificate table in the optional
// header's data directories (IMAGE_DIRECTORY_ENTRY_SECURITY).
const securityDir = 4

// WIN_CERTIFICATE header values (PE/COFF specification, "The Attribute
// Certificate Table").
const (
	certRevision2  = 0x0200 // WIN_CERT_REVISION_2_0
	certPKCSSigned = 0x0002 // WIN_CERT_TYPE_PKCS_SIGNED_DATA: Authenticode
	certHeaderSize = 8      // dwLength, wRevision, wCertificateType
)

// ErrNotPE marks a file that is not a PE/COFF image (e.g. a kernel built
// without the EFI stub).
var ErrNotPE = errors.New("not a PE/COFF (UEFI) image")

// Signature is where a PE file's certificate table is.
type Signature struct {
	// Offset and Size of the certificate table: unlike the other data
	// directories, its "virtual address" is a file offset. Zero size: no
	// signature.
	Offset, Size uint32
}

// Find returns the certificate table entry of the PE image r of size
// bytes, and whether it holds an Authenticode signature: the entry is
// non-empty, lies inside the file and starts with a WIN_CERTIFICATE of
// type PKCS signed data. Errors are for files that are not PE images or
// whose entry points outside the file.
func Find(r io.ReaderAt, size int64) (sig Signature, signed bool, err error) {
	f, err := pe.NewFile(r)
	if err != nil {
		return sig, false, fmt.Errorf("%w: %v", ErrNotPE, err)
	}
	var dirs []pe.DataDirectory
	switch oh := f.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		dirs = oh.DataDirectory[:oh.NumberOfRvaAndSizes]
	case *pe.OptionalHeader32:
		dirs = oh.DataDirectory[:oh.NumberOfRvaAndSizes]
	default:
		return sig, false, fmt.Errorf("%w: no optional header", ErrNotPE)
	}
	if len(dirs) <= securityDir {
		return sig, false, nil
	}
	d := dirs[securityDir]
	sig = Signature{Offset: d.VirtualAddress, Size: d.Size}
	if d.Size == 0 {
		return sig, false, nil
	}
	if d.Size < certHeaderSize || int64(d.VirtualAddress)+int64(d.Size) > size {
		return sig, false, fmt.Errorf("certificate table at %d, %d bytes, is outside the %d-byte file", d.VirtualAddress, d.Size, size)
	}
	var hdr [certHeaderSize]byte
	if _, err := r.ReadAt(hdr[:], int64(d.VirtualAddress)); err != nil {
		return sig, false, fmt.Errorf("read certificate table: %w", err)
	}
	length := binary.LittleEndian.Uint32(hdr[0:])
	rev := binary.LittleEndian.Uint16(hdr[4:])
	typ := binary.LittleEndian.Uint16(hdr[6:])
	return sig, length >= certHeaderSize && length <= d.Size && rev == certRevision2 && typ == certPKCSSigned, nil
}

// Signed reports whether the PE image r of size bytes carries an
// Authenticode signature (see Find).
func Signed(r io.ReaderAt, size int64) (bool, error) {
	_, ok, err := Find(r, size)
	return ok, err
}

// Strip returns a copy of the PE image data without its signature: the
// certificate table entry zeroed and the table cut off (it is the file's
// end in signed images). Firmware and shim must then refuse the image
// under Secure Boot; the lab uses it for that negative case.
func Strip(data []byte) ([]byte, error) {
	sig, _, err := Find(bytesReaderAt(data), int64(len(data)))
	if err != nil {
		return nil, err
	}
	off, err := securityEntryOffset(data)
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), data...)
	if sig.Size != 0 {
		out = out[:sig.Offset]
	}
	binary.LittleEndian.PutUint64(out[off:], 0)
	return out, nil
}

// securityEntryOffset is the file offset of the certificate table's data
// directory entry: e_lfanew (at 0x3c) + "PE\0\0" + the 20-byte COFF header
// + the optional header's fields before its data directories (96 bytes
// for PE32, 112 for PE32+) + 4 entries of 8 bytes.
func securityEntryOffset(data []byte) (int, error) {
	if len(data) < 0x40 {
		return 0, ErrNotPE
	}
	opt := int(binary.LittleEndian.Uint32(data[0x3c:])) + 4 + 20
	if opt+2 > len(data) {
		return 0, ErrNotPE
	}
	dirs := 0
	switch binary.LittleEndian.Uint16(data[opt:]) {
	case 0x20b: // PE32+
		dirs = opt + 112
	case 0x10b: // PE32
		dirs = opt + 96
	default:
		return 0, ErrNotPE
	}
	off := dirs + securityDir*8
	if off+8 > len(data) {
		return 0, ErrNotPE
	}
	return off, nil
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
