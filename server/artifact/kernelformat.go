package artifact

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/wwcluster/ww/server/config"
)

// ErrNotKernel: the file a node would boot as its kernel is not a Linux
// kernel image (for example the placeholder `wwserver init` writes).
var ErrNotKernel = errors.New("not a Linux kernel image")

// PlaceholderMark starts the placeholder kernel `wwserver init` writes.
const PlaceholderMark = "REPLACE ME"

// kernelHeaderLen is how much of a kernel KernelFormat reads: past the x86
// setup header (0x202) and far enough for a PE header offset.
const kernelHeaderLen = 4096

// KernelFormat names the boot image format data starts with: an x86
// bzImage ("HdrS" setup header at 0x202), an arm64 or RISC-V Image (magic
// at 0x38), a PE/COFF EFI application (EFI zboot and other EFI-stub
// kernels), an ELF vmlinux, or a compressed kernel (gzip, zstd, xz, lz4,
// bzip2). Anything else returns an error matching ErrNotKernel. It only
// looks at the header: it catches a placeholder or a wrong file, not a
// damaged kernel.
func KernelFormat(r io.ReaderAt) (string, error) {
	buf := make([]byte, kernelHeaderLen)
	n, err := r.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read kernel header: %w", err)
	}
	b := buf[:n]
	at := func(off int, magic string) bool {
		return len(b) >= off+len(magic) && string(b[off:off+len(magic)]) == magic
	}
	switch {
	case at(0x202, "HdrS"):
		return "x86 bzImage", nil
	case at(0x38, "ARM\x64"):
		return "arm64 Image", nil
	case at(0x38, "RSC\x05"):
		return "RISC-V Image", nil
	case at(0, "MZ") && len(b) >= 0x40:
		if off := int(binary.LittleEndian.Uint32(b[0x3c:])); off > 0 && at(off, "PE\x00\x00") {
			return "EFI (PE/COFF) image", nil
		}
	case at(0, "\x7fELF"):
		return "ELF vmlinux", nil
	case at(0, "\x1f\x8b"):
		return "gzip-compressed kernel", nil
	case at(0, "\x28\xb5\x2f\xfd"):
		return "zstd-compressed kernel", nil
	case at(0, "\xfd7zXZ\x00"):
		return "xz-compressed kernel", nil
	case at(0, "\x02\x21\x4c\x18"), at(0, "\x04\x22\x4d\x18"):
		return "lz4-compressed kernel", nil
	case at(0, "BZh"):
		return "bzip2-compressed kernel", nil
	}
	return "", ErrNotKernel
}

// CheckKernel finds the kernel node n boots, as Kernel does, and checks
// that it looks like a Linux kernel (KernelFormat). Errors match
// ErrNotFound (no kernel, no image) or ErrNotKernel and name the image and
// the kernel's path in it; one for the placeholder `wwserver init` writes
// says so and what to do.
func (b *Builder) CheckKernel(n *config.Node) (*Artifact, error) {
	a, err := b.kernel(n) // not Kernel: a check is no failed request (metrics)
	if err != nil {
		return nil, err
	}
	f, err := a.Open()
	if err != nil {
		return nil, fmt.Errorf("image %q: kernel %s: %w", n.Image, a.kernelPath, err)
	}
	defer f.Close()
	ra, ok := f.(io.ReaderAt)
	if !ok {
		return nil, fmt.Errorf("image %q: kernel %s: cannot read its header", n.Image, a.kernelPath)
	}
	if _, err := KernelFormat(ra); err != nil {
		if !errors.Is(err, ErrNotKernel) {
			return nil, fmt.Errorf("image %q: kernel %s: %w", n.Image, a.kernelPath, err)
		}
		msg := fmt.Sprintf("image %q: kernel %s is not a Linux kernel image (no x86 bzImage, arm64/RISC-V Image, EFI, ELF or compressed-kernel header), so nodes cannot boot it",
			n.Image, a.kernelPath)
		head := make([]byte, len(PlaceholderMark))
		if _, err := ra.ReadAt(head, 0); err == nil && bytes.Equal(head, []byte(PlaceholderMark)) {
			msg = fmt.Sprintf("image %q is the placeholder wwserver init wrote and will not boot: kernel %s is not a Linux kernel. "+
				"Put a real root filesystem with its kernel in images/%s/rootfs (wwserver image import SOURCE %s, "+
				"or wwserver init DIR --force --image-from ROOTFS)", n.Image, a.kernelPath, n.Image, n.Image)
		}
		return nil, &kindError{kind: ErrNotKernel, msg: msg}
	}
	return a, nil
}

// BootProblem is one image (and kernel setting) whose nodes cannot boot.
type BootProblem struct {
	Image string
	// Kernel is the nodes' kernel setting ("" for the newest boot/vmlinuz-*).
	Kernel string
	// Nodes use this image and kernel setting, sorted by name.
	Nodes []*config.Node
	// Err says what is wrong (matches ErrNotFound or ErrNotKernel, or
	// another error reading the image).
	Err error
}

// BootChecker checks the kernel of every image the nodes boot, once per
// distinct image and kernel setting, and remembers each verdict by the
// kernel's ETag: when nothing changed, a check costs a kernel lookup (a
// directory read and a stat) per distinct image. Safe for concurrent use.
type BootChecker struct {
	b *Builder

	mu     sync.Mutex       // one Problems at a time
	snap   *config.Snapshot // groups are of this snapshot
	groups [][]*config.Node // nodes by image and kernel setting
	// verdicts maps kernel ETag → result; replaced whole by Problems, read
	// without a lock by IsBad (on every kernel request).
	verdicts atomic.Pointer[map[string]verdict]
}

type verdict struct{ err error }

// NewBootChecker returns a checker using b.
func NewBootChecker(b *Builder) *BootChecker {
	c := &BootChecker{b: b}
	c.verdicts.Store(&map[string]verdict{})
	return c
}

// Problems returns every image of snap whose nodes cannot boot, sorted by
// image name.
func (c *BootChecker) Problems(snap *config.Snapshot) []BootProblem {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snap != snap {
		c.snap, c.groups = snap, groupByKernel(snap.Nodes.List)
	}
	var out []BootProblem
	known := *c.verdicts.Load()
	seen := make(map[string]verdict, len(c.groups))
	for _, g := range c.groups {
		n := g[0]
		var err error
		a, kerr := c.b.kernel(n)
		switch {
		case kerr != nil:
			err = kerr
		default:
			v, ok := known[a.ETag]
			if !ok {
				_, cerr := c.b.CheckKernel(n)
				v = verdict{err: cerr}
			}
			seen[a.ETag] = v
			err = v.err
		}
		if err != nil {
			out = append(out, BootProblem{Image: n.Image, Kernel: n.Kernel, Nodes: g, Err: err})
		}
	}
	c.verdicts.Store(&seen) // kernels no longer in use are forgotten
	return out
}

// IsBad reports whether the kernel with this ETag was found not to be a
// kernel by the last Problems call (a map lookup without a lock, for the
// serving path).
func (c *BootChecker) IsBad(etag string) bool {
	v, ok := (*c.verdicts.Load())[etag]
	return ok && v.err != nil
}

// groupByKernel groups nodes by image and kernel setting; groups are sorted
// by image, then kernel, and keep the nodes' (name) order.
func groupByKernel(nodes []*config.Node) [][]*config.Node {
	type key struct{ image, kernel string }
	idx := map[key]int{}
	var groups [][]*config.Node
	var keys []key
	for _, n := range nodes {
		k := key{n.Image, n.Kernel}
		i, ok := idx[k]
		if !ok {
			i = len(groups)
			idx[k] = i
			groups = append(groups, nil)
			keys = append(keys, k)
		}
		groups[i] = append(groups[i], n)
	}
	order := make([]int, len(groups))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		ka, kb := keys[order[a]], keys[order[b]]
		if ka.image != kb.image {
			return ka.image < kb.image
		}
		return ka.kernel < kb.kernel
	})
	out := make([][]*config.Node, len(groups))
	for i, j := range order {
		out[i] = groups[j]
	}
	return out
}
