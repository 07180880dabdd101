package check

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wwcluster/ww/overlays"
)

// TestArchProblems: a node whose image is arm64 (its kernel says so) is
// told when the wwclient of its system overlays is built for amd64 (here:
// the test binary itself), when it does not boot with GRUB while the TFTP
// window is above 1, and when the arm64 shim/GRUB files are missing; the
// same node with an arm64 wwclient laid over it, bootloader = "grub" and
// the files present has none of these.
func TestArchProblems(t *testing.T) {
	root := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	write := func(rel string, data []byte) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	amd64Client, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	kernel := make([]byte, 0x100)
	copy(kernel[0x38:], "ARM\x64")
	write("images/arm/rootfs/boot/vmlinuz-6.1.0-1-arm64", kernel)
	write("overlays/wwinit/"+overlays.ClientBinary, amd64Client)
	write("wwserver.toml", []byte("address = \"10.0.2.1\"\n[grub]\nshim_arm64 = \""+root+"/missing-shim\"\n"))
	write("nodes.toml", []byte(`
[nodes.a1]
image = "arm"
system_overlays = ["wwinit"]
[nodes.a1.network.eth0]
hwaddr = "52:54:00:00:00:01"
`))
	log := slog.New(slog.DiscardHandler)
	all := strings.Join(Tree(root, log), "\n")
	for _, want := range []string{
		`image "arm" is arm64 but the wwclient its system overlays install (overlays/wwinit/usr/sbin/wwclient) is amd64`,
		`image "arm" is arm64: the node boots shim and GRUB`,
		"grub.shim_arm64:", "(arm64 nodes: a1)",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("check lacks %q:\n%s", want, all)
		}
	}

	// An ELF header for arm64 is all elfArch reads.
	arm64Client := append([]byte(nil), amd64Client...)
	arm64Client[18], arm64Client[19] = 183, 0 // e_machine = EM_AARCH64
	write("overlays/wwinit-arm64/"+overlays.ClientBinary, arm64Client)
	write("shim", []byte("x"))
	write("grub", []byte("x"))
	write("wwserver.toml", []byte("address = \"10.0.2.1\"\n[grub]\nshim_arm64 = \""+root+"/shim\"\ngrub_arm64 = \""+root+"/grub\"\n"))
	write("nodes.toml", []byte(`
[nodes.a1]
image = "arm"
bootloader = "grub"
system_overlays = ["wwinit", "wwinit-arm64"]
[nodes.a1.network.eth0]
hwaddr = "52:54:00:00:00:01"
`))
	for _, p := range Tree(root, log) {
		if strings.Contains(p, "is arm64") || strings.Contains(p, "arm64 nodes") {
			t.Errorf("fixed tree still reports: %s", p)
		}
	}
}
