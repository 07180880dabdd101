package bootscript

import "strings"

// A node's image is built for one CPU architecture (bootplan.Plan.Arch,
// GOARCH names); the boot loader knows the one it runs on (GRUB's
// $grub_cpu, iPXE's ${buildarch}). When they differ the script says so on
// the console, reports it to the server (status: WRONG_ARCH:LOADERARCH)
// and exits to the firmware, instead of loading a kernel that cannot run.

// grubCPU is GRUB's $grub_cpu on machines that run images of arch ("":
// no check).
func grubCPU(arch string) string {
	switch arch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "arm64"
	case "386":
		return "i386"
	case "riscv64":
		return "riscv64"
	}
	return ""
}

// ipxeArches are the iPXE ${buildarch} values that can boot an image of
// arch (nil: no check). undionly.kpxe is an i386 build that boots 64-bit
// kernels.
func ipxeArches(arch string) []string {
	switch arch {
	case "amd64", "386":
		return []string{"x86_64", "i386"}
	case "arm64":
		return []string{"arm64"}
	case "riscv64":
		return []string{"riscv64"}
	}
	return nil
}

// WrongArchSent is what status records as sent when a boot loader reports
// it runs on loaderArch, which cannot boot the node's image. loaderArch
// comes from the node: anything but a short plain word is shown as "?".
func WrongArchSent(loaderArch string) string {
	if loaderArch == "" || len(loaderArch) > 16 || strings.IndexFunc(loaderArch, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
	}) >= 0 {
		loaderArch = "?"
	}
	return "WRONG_ARCH:" + loaderArch
}
