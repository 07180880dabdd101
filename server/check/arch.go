package check

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wwcluster/ww/overlays"
	"github.com/wwcluster/ww/server/artifact"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/hostlist"
)

// archProblems are the problems of nodes by their image's architecture
// (its kernel's): the wwclient their system overlays install (the last
// overlay that has overlays.ClientBinary wins, as when they are laid over
// each other) built for another architecture, which cannot run as the
// node's /init; for arm64 nodes, which boot shim and GRUB whatever their
// bootloader (Debian has no arm64 iPXE), a TFTP window GRUB cannot take
// and the grub.shim_arm64/grub_arm64 files. Images whose kernel does not
// say its architecture are not checked.
func archProblems(root string, b *artifact.Builder, snap *config.Snapshot) []string {
	var per nodeProblems
	var arm64Nodes []string
	clientArch := map[string]string{} // wwclient path → its ELF architecture
	for _, n := range snap.Nodes.List {
		arch, err := b.ImageArch(n)
		if err != nil || arch == "" {
			continue // no kernel: bootProblems says so
		}
		if arch == artifact.ArchARM64 {
			arm64Nodes = append(arm64Nodes, n.Name)
			if snap.Server.LoaderFor(n) != config.LoaderGRUB && snap.Server.DHCP.ARM64File == "" && snap.TFTPAnticipate() > 1 {
				per.add(n, ".bootloader", fmt.Sprintf("image %q is arm64: the node boots shim and GRUB over TFTP (Debian has no arm64 iPXE); "+
					"set bootloader = %q so that TFTP sends GRUB one packet at a time (tftp.anticipate is %d: GRUB drops packets of a window, boots take minutes)",
					n.Image, config.LoaderGRUB, snap.TFTPAnticipate()))
			}
		}
		client := ""
		for _, o := range n.SystemOverlays {
			p := filepath.Join(root, "overlays", o, filepath.FromSlash(overlays.ClientBinary))
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				client = p
			}
		}
		if client == "" {
			continue
		}
		ca, ok := clientArch[client]
		if !ok {
			ca = elfArch(client)
			clientArch[client] = ca
		}
		if ca != "" && ca != arch {
			rel, _ := filepath.Rel(root, client)
			per.add(n, ".system_overlays", fmt.Sprintf("image %q is %s but the wwclient its system overlays install (%s) is %s: "+
				"it cannot run as the node's /init; lay an overlay with a %s wwclient at %s over it (CGO_ENABLED=0 GOARCH=%s go build ./wwclient; make build writes bin/arm64/wwclient)",
				n.Image, arch, rel, ca, arch, overlays.ClientBinary, arch))
		}
	}
	problems := per.lines()
	if len(arm64Nodes) > 0 {
		for _, err := range snap.Server.GRUBARM64FileProblems() {
			problems = append(problems, fmt.Sprintf("%s (arm64 nodes: %s)", err, hostlist.Compress(arm64Nodes)))
		}
	}
	return problems
}

// elfArch is the architecture (GOARCH names) of the ELF executable at
// path, "" when it is not one this check knows.
func elfArch(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return artifact.ArchAMD64
	case elf.EM_AARCH64:
		return artifact.ArchARM64
	case elf.EM_386:
		return artifact.Arch386
	case elf.EM_RISCV:
		return artifact.ArchRISCV64
	}
	return ""
}
