package artifact

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// magicBytes returns n bytes of zeros with magic written at each offset.
func magicBytes(n int, magic map[int]string) []byte {
	b := make([]byte, n)
	for off, m := range magic {
		copy(b[off:], m)
	}
	return b
}

func TestKernelFormat(t *testing.T) {
	pe := magicBytes(0x200, map[int]string{0: "MZ", 0x80: "PE\x00\x00"})
	binary.LittleEndian.PutUint32(pe[0x3c:], 0x80)
	peBadOffset := magicBytes(0x200, map[int]string{0: "MZ"})
	binary.LittleEndian.PutUint32(peBadOffset[0x3c:], 0x80)
	for _, c := range []struct {
		name string
		data []byte
		want string // "" = not a kernel
	}{
		{"bzImage", magicBytes(0x400, map[int]string{0: "MZ", 0x202: "HdrS"}), "x86 bzImage"},
		{"arm64 Image", magicBytes(0x40, map[int]string{0x38: "ARM\x64"}), "arm64 Image"},
		{"riscv Image", magicBytes(0x40, map[int]string{0x38: "RSC\x05"}), "RISC-V Image"},
		{"EFI zboot", pe, "EFI (PE/COFF) image"},
		{"MZ without PE header", peBadOffset, ""},
		{"ELF", []byte("\x7fELF\x02\x01\x01"), "ELF vmlinux"},
		{"gzip", []byte{0x1f, 0x8b, 8, 0}, "gzip-compressed kernel"},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd, 0}, "zstd-compressed kernel"},
		{"placeholder", []byte(PlaceholderMark + ": this is not a kernel.\n"), ""},
		{"text", []byte("kernel 28"), ""},
		{"empty", nil, ""},
		{"HdrS too early", magicBytes(0x300, map[int]string{0x200: "HdrS"}), ""},
	} {
		got, err := KernelFormat(bytes.NewReader(c.data))
		if c.want == "" {
			if !errors.Is(err, ErrNotKernel) {
				t.Errorf("%s: format %q, err %v; want ErrNotKernel", c.name, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: format %q, err %v; want %q", c.name, got, err, c.want)
		}
	}
}

// TestBootChecker: images whose kernel is missing or not a kernel are
// reported once per image with all their nodes; the placeholder gets its own
// message; a fixed kernel clears the problem; IsBad follows the verdicts.
func TestBootChecker(t *testing.T) {
	tt := newTree(t)
	tt.standard() // image "debian" with text kernels
	bz := string(magicBytes(0x400, map[int]string{0: "MZ", 0x202: "HdrS"}))
	tt.file("images/good/rootfs/boot/vmlinuz-6.1.0-1-amd64", bz, 0o644)
	tt.file("images/init/rootfs/boot/vmlinuz-0-placeholder", PlaceholderMark+": this is not a kernel.\n", 0o644)
	tt.dir("images/empty/rootfs/boot", 0o755)
	nodes := `
[nodes.a1]
image = "good"
[nodes.a2]
image = "good"
[nodes.b1]
image = "debian"
[nodes.b2]
image = "debian"
[nodes.b3]
image = "debian"
kernel = "boot/vmlinuz-6.1.0-9-amd64"
[nodes.c1]
image = "init"
[nodes.d1]
image = "empty"
`
	snap := snapshot(t, nodes)
	b, _ := newBuilder(t, tt.root)
	c := NewBootChecker(b)
	probs := c.Problems(snap)
	type row struct{ image, kernel, nodes, kind string }
	var got []row
	for _, p := range probs {
		var names []string
		for _, n := range p.Nodes {
			names = append(names, n.Name)
		}
		kind := "other"
		switch {
		case errors.Is(p.Err, ErrNotKernel):
			kind = "notkernel"
		case errors.Is(p.Err, ErrNotFound):
			kind = "notfound"
		}
		got = append(got, row{p.Image, p.Kernel, strings.Join(names, ","), kind})
	}
	want := []row{
		{"debian", "", "b1,b2", "notkernel"},
		{"debian", "boot/vmlinuz-6.1.0-9-amd64", "b3", "notkernel"},
		{"empty", "", "d1", "notfound"},
		{"init", "", "c1", "notkernel"},
	}
	if len(got) != len(want) {
		t.Fatalf("problems %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("problem %d: %+v, want %+v (err %v)", i, got[i], want[i], probs[i].Err)
		}
	}
	for _, p := range probs {
		msg := p.Err.Error()
		switch p.Image {
		case "init":
			for _, w := range []string{`image "init" is the placeholder wwserver init wrote`, "boot/vmlinuz-0-placeholder", "images/init/rootfs"} {
				if !strings.Contains(msg, w) {
					t.Errorf("placeholder message lacks %q: %s", w, msg)
				}
			}
		case "debian":
			if !strings.Contains(msg, "is not a Linux kernel image") || strings.Contains(msg, "placeholder") {
				t.Errorf("debian message: %s", msg)
			}
		}
	}
	goodKernel, err := b.Kernel(t.Context(), snap, snap.Nodes.ByName["a1"])
	if err != nil {
		t.Fatal(err)
	}
	initKernel, err := b.Kernel(t.Context(), snap, snap.Nodes.ByName["c1"])
	if err != nil {
		t.Fatal(err)
	}
	if c.IsBad(goodKernel.ETag) || !c.IsBad(initKernel.ETag) {
		t.Errorf("IsBad: good %v, placeholder %v", c.IsBad(goodKernel.ETag), c.IsBad(initKernel.ETag))
	}

	// The admin puts a real kernel in place: the next check is clean for it.
	tt.file("images/init/rootfs/boot/vmlinuz-0-placeholder", bz, 0o644)
	for _, p := range c.Problems(snap) {
		if p.Image == "init" {
			t.Errorf("still reported after the kernel was replaced: %v", p.Err)
		}
	}
	if c.IsBad(initKernel.ETag) {
		t.Error("the replaced kernel's old verdict is still remembered")
	}
}
