package artifact

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/wwcluster/ww/server/config"
)

// Architectures a kernel can be built for, by their GOARCH (and OCI
// platform) names.
const (
	ArchAMD64   = "amd64"
	ArchARM64   = "arm64"
	Arch386     = "386"
	ArchRISCV64 = "riscv64"
)

// KernelArch is the CPU architecture the kernel image in r is built for:
// from the PE/COFF header's machine field of an EFI-stub kernel (Debian's
// x86 bzImage and arm64 Image both carry one), else an arm64 or RISC-V
// Image's magic, an x86 setup header (amd64: the 32-bit kind is rare), an
// ELF vmlinux's e_machine. "" when the header does not say (a compressed
// kernel, not a kernel).
func KernelArch(r io.ReaderAt) (string, error) {
	buf := make([]byte, kernelHeaderLen)
	n, err := r.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read kernel header: %w", err)
	}
	b := buf[:n]
	at := func(off int, magic string) bool {
		return off >= 0 && len(b) >= off+len(magic) && string(b[off:off+len(magic)]) == magic
	}
	if at(0, "MZ") && len(b) >= 0x40 {
		if off := int(binary.LittleEndian.Uint32(b[0x3c:])); off < len(b)-6 && at(off, "PE\x00\x00") {
			switch binary.LittleEndian.Uint16(b[off+4:]) {
			case 0x8664:
				return ArchAMD64, nil
			case 0xaa64:
				return ArchARM64, nil
			case 0x14c:
				return Arch386, nil
			case 0x5064:
				return ArchRISCV64, nil
			}
		}
	}
	switch {
	case at(0x38, "ARM\x64"):
		return ArchARM64, nil
	case at(0x38, "RSC\x05"):
		return ArchRISCV64, nil
	case at(0x202, "HdrS"):
		return ArchAMD64, nil
	case at(0, "\x7fELF") && len(b) >= 20:
		switch binary.LittleEndian.Uint16(b[18:]) {
		case 62:
			return ArchAMD64, nil
		case 183:
			return ArchARM64, nil
		case 3:
			return Arch386, nil
		case 243:
			return ArchRISCV64, nil
		}
	}
	return "", nil
}

// archCacheMax bounds the remembered kernel architectures (one per kernel
// file version in use; the map is emptied when it grows past this).
const archCacheMax = 1024

// archCache remembers KernelArch by kernel ETag.
type archCache struct {
	mu sync.Mutex
	m  map[string]string
}

// ImageArch is the architecture of the kernel node n boots ("" when its
// header does not say), read once per kernel version (by ETag): a kernel
// lookup (a directory read and a stat) per call otherwise.
func (b *Builder) ImageArch(n *config.Node) (string, error) {
	a, err := b.kernel(n)
	if err != nil {
		return "", err
	}
	c := &b.arches
	c.mu.Lock()
	arch, ok := c.m[a.ETag]
	c.mu.Unlock()
	if ok {
		return arch, nil
	}
	f, err := a.Open()
	if err != nil {
		return "", fmt.Errorf("image %q: kernel %s: %w", n.Image, a.kernelPath, err)
	}
	defer f.Close()
	ra, ok := f.(io.ReaderAt)
	if !ok {
		return "", fmt.Errorf("image %q: kernel %s: cannot read its header", n.Image, a.kernelPath)
	}
	if arch, err = KernelArch(ra); err != nil {
		return "", fmt.Errorf("image %q: kernel %s: %w", n.Image, a.kernelPath, err)
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= archCacheMax {
		c.m = map[string]string{}
	}
	c.m[a.ETag] = arch
	c.mu.Unlock()
	return arch, nil
}

// ImageArchOf is Builder.ImageArch for one-off commands (wwserver render:
// the script the server would send): "" when unknown or unreadable.
func ImageArchOf(o Options, n *config.Node) string {
	b, err := New(o)
	if err != nil {
		return ""
	}
	defer b.Close()
	arch, _ := b.ImageArch(n)
	return arch
}
