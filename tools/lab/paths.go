package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
)

// Paths are the files the lab needs. FindPaths fills them in.
type Paths struct {
	Wwserver string // bin/wwserver
	Wwclient string // bin/wwclient
	Image    string // the image rootfs (build/image/rootfs)
	Kernel   string // newest Image/boot/vmlinuz-*
	QEMU     string // qemu-system-x86_64
	IPXEDir  string // /usr/lib/ipxe (undionly.kpxe, snponly.efi, ipxe.efi)
	OVMFCode string // OVMF_CODE*.fd
	OVMFVars string // the matching OVMF_VARS*.fd (copied per VM)
	// OVMFSecureCode and OVMFMSVars are the Secure Boot firmware (SMM
	// required) and a variable store with Microsoft's keys enrolled (Secure
	// Boot on): VMOptions.SecureBoot. Empty when this OVMF has none.
	OVMFSecureCode, OVMFMSVars string
	// QEMUARM64 (qemu-system-aarch64) and AAVMF (EDK2 for QEMU virt) boot
	// arm64 nodes (Firmware ARM64); empty when not installed.
	QEMUARM64, AAVMF string
}

// aavmf is the arm64 UEFI firmware of package qemu-efi-aarch64.
const aavmf = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"

// Secure Boot firmware: OVMF built with SMM and a variable store with
// Microsoft's UEFI CA (which signed Debian's shim) enrolled.
const (
	ovmfSecureCode = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	ovmfMSVars     = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// Debian packages providing what the lab needs.
var AptPackages = []string{"qemu-system-x86", "ipxe", "ipxe-qemu", "ovmf", "iproute2"}

// ovmfPairs are code/vars pairs of the same flash size, preferred first.
var ovmfPairs = [][2]string{
	{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
}

// FindPaths locates the binaries in binDir, the image rootfs (image may be
// the rootfs itself or the directory holding rootfs/, as initramfs/build.sh
// writes it), QEMU, iPXE and OVMF. It returns every problem found, so a
// caller can report them all at once (or skip a test with them).
func FindPaths(binDir, image string) (Paths, error) {
	var p Paths
	var errs []error
	abs := func(s string) string {
		a, err := filepath.Abs(s)
		if err != nil {
			return s
		}
		return a
	}
	for _, b := range []struct {
		dst  *string
		name string
	}{{&p.Wwserver, "wwserver"}, {&p.Wwclient, "wwclient"}} {
		f := filepath.Join(abs(binDir), b.name)
		if st, err := os.Stat(f); err != nil || st.Mode()&0o111 == 0 {
			errs = append(errs, fmt.Errorf("%s missing (make build)", f))
		} else {
			*b.dst = f
		}
	}
	image = abs(image)
	if st, err := os.Stat(filepath.Join(image, "rootfs")); err == nil && st.IsDir() {
		image = filepath.Join(image, "rootfs")
	}
	p.Image = image
	k, err := NewestKernel(image)
	if err != nil {
		errs = append(errs, fmt.Errorf("image %s: %w (make image)", image, err))
	}
	p.Kernel = k
	if q, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		errs = append(errs, errors.New("qemu-system-x86_64 missing (apt-get install qemu-system-x86)"))
	} else {
		p.QEMU = q
	}
	p.IPXEDir = "/usr/lib/ipxe"
	for _, f := range []string{"undionly.kpxe", "snponly.efi"} {
		if _, err := os.Stat(filepath.Join(p.IPXEDir, f)); err != nil {
			errs = append(errs, fmt.Errorf("%s/%s missing (apt-get install ipxe)", p.IPXEDir, f))
		}
	}
	if _, err := os.Stat("/usr/lib/ipxe/qemu/efi-virtio.rom"); err != nil {
		errs = append(errs, errors.New("/usr/lib/ipxe/qemu/efi-virtio.rom missing (apt-get install ipxe-qemu)"))
	}
	for _, pair := range ovmfPairs {
		if fileExists(pair[0]) && fileExists(pair[1]) {
			p.OVMFCode, p.OVMFVars = pair[0], pair[1]
			break
		}
	}
	if p.OVMFCode == "" {
		errs = append(errs, errors.New("OVMF firmware missing (apt-get install ovmf)"))
	}
	if q, err := exec.LookPath("qemu-system-aarch64"); err == nil && fileExists(aavmf) {
		p.QEMUARM64, p.AAVMF = q, aavmf
	}
	if fileExists(ovmfSecureCode) && fileExists(ovmfMSVars) {
		p.OVMFSecureCode, p.OVMFMSVars = ovmfSecureCode, ovmfMSVars
	}
	return p, errors.Join(errs...)
}

// CheckHost reports what the lab needs from the host itself: root, the tun
// device and ip(8).
func CheckHost() error {
	var errs []error
	if os.Geteuid() != 0 {
		errs = append(errs, errors.New("not root (the lab creates network namespaces and taps)"))
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		errs = append(errs, errors.New("/dev/net/tun missing"))
	}
	if _, err := exec.LookPath("ip"); err != nil {
		errs = append(errs, errors.New("ip missing (apt-get install iproute2)"))
	}
	return errors.Join(errs...)
}

// NewestKernel returns the newest rootfs/boot/vmlinuz-* (by version order).
func NewestKernel(rootfs string) (string, error) {
	m, _ := filepath.Glob(filepath.Join(rootfs, "boot", "vmlinuz-*"))
	if len(m) == 0 {
		return "", errors.New("no boot/vmlinuz-*")
	}
	sort.Slice(m, func(i, j int) bool { return versionLess(m[i], m[j]) })
	return m[len(m)-1], nil
}

// versionLess compares strings with digit runs compared as numbers.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			i, j := 0, 0
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			na, nb := trimZeros(a[:i]), trimZeros(b[:j])
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[i:], b[j:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func trimZeros(s string) string {
	for len(s) > 1 && s[0] == '0' {
		s = s[1:]
	}
	return s
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
