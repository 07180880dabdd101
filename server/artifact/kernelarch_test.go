package artifact

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// pe is a header with an MZ stub whose PE header (at 0x80) names machine.
func pe(machine uint16) []byte {
	b := make([]byte, 0x400)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], 0x80)
	copy(b[0x80:], "PE\x00\x00")
	binary.LittleEndian.PutUint16(b[0x84:], machine)
	return b
}

func TestKernelArch(t *testing.T) {
	arm64Image := pe(0xaa64)
	copy(arm64Image[0x38:], "ARM\x64") // Debian's arm64 Image: EFI stub and Image magic
	bz := make([]byte, 0x300)
	copy(bz[0x202:], "HdrS")
	bzPE := pe(0x8664)
	copy(bzPE[0x202:], "HdrS")
	armNoPE := make([]byte, 0x100)
	copy(armNoPE[0x38:], "ARM\x64")
	elf := make([]byte, 64)
	copy(elf, "\x7fELF")
	binary.LittleEndian.PutUint16(elf[18:], 183)
	badPE := pe(0x8664)
	binary.LittleEndian.PutUint32(badPE[0x3c:], 0xffffff00) // offset past the header
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"arm64 Image with EFI stub", arm64Image, ArchARM64},
		{"x86 bzImage with EFI stub", bzPE, ArchAMD64},
		{"x86 bzImage", bz, ArchAMD64},
		{"arm64 Image", armNoPE, ArchARM64},
		{"riscv PE", pe(0x5064), ArchRISCV64},
		{"arm64 ELF", elf, ArchARM64},
		{"gzip", []byte("\x1f\x8b\x08\x00"), ""},
		{"placeholder", []byte(PlaceholderMark), ""},
		{"empty", nil, ""},
		{"PE offset out of range", badPE, ""},
	} {
		got, err := KernelArch(bytes.NewReader(tc.data))
		if err != nil || got != tc.want {
			t.Errorf("%s: KernelArch = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}
