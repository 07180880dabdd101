package config

import (
	"fmt"
	"path/filepath"
)

// Boot loaders a node can be started with (node/profile key bootloader,
// wwserver.toml key bootloader for the default).
const (
	// LoaderIPXE: the firmware fetches iPXE (undionly.kpxe, snponly.efi,
	// ipxe.efi), which runs the node's iPXE script (GET /ipxe/{mac}).
	LoaderIPXE = "ipxe"
	// LoaderGRUB: UEFI firmware fetches Debian's signed shim, shim the
	// signed GRUB (as grubx64.efi), GRUB /grub/grub.cfg over TFTP (made
	// by wwserver), which loads the node's GRUB config (GET /grub/{mac}):
	// the chain that boots with Secure Boot enforcing. BIOS machines keep
	// iPXE (there is no Secure Boot there).
	LoaderGRUB = "grub"
)

// Debian's signed binaries (packages shim-signed and grub-efi-amd64-signed),
// the defaults of wwserver.toml [grub].
const (
	DefaultShim = "/usr/lib/shim/shimx64.efi.signed"
	DefaultGRUB = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"
	// arm64 (packages shim-signed:arm64 and grub-efi-arm64-signed, after
	// dpkg --add-architecture arm64): Debian has no arm64 iPXE, so arm64
	// nodes boot GRUB, behind shim (Secure Boot or not).
	DefaultShimARM64 = "/usr/lib/shim/shimaa64.efi.signed"
	DefaultGRUBARM64 = "/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed"
)

// The names under which the shim and GRUB are served (TFTP and
// /ipxe-bin/): the boot file DHCP names, and the second stage shim asks
// for next to it (shim's DEFAULT_LOADER).
const (
	ShimName = "shimx64.efi"
	GRUBName = "grubx64.efi"
	// arm64: shimaa64 asks for grubaa64.efi next to itself.
	ShimARM64Name = "shimaa64.efi"
	GRUBARM64Name = "grubaa64.efi"
)

// GRUB is the [grub] section of wwserver.toml: where the Secure Boot chain
// comes from. Both are paths on the server (the admin's, trusted like the
// boot files), resolved with their symlinks when the config loads.
type GRUB struct {
	Shim string `toml:"shim"` // served as shimx64.efi; default DefaultShim
	GRUB string `toml:"grub"` // served as grubx64.efi; default DefaultGRUB (a GRUB with http, tftp, efinet, linux built in)
	// ShimARM64 and GRUBARM64: the same for arm64 UEFI (option 93 = 11,
	// 19), served as shimaa64.efi and grubaa64.efi.
	ShimARM64 string `toml:"shim_arm64"`
	GRUBARM64 string `toml:"grub_arm64"`
}

// LoaderFor is the boot loader of node n: its own (or its profiles')
// bootloader, else the server's default. n may be nil (an unknown MAC).
func (s *Server) LoaderFor(n *Node) string {
	if n != nil && n.Bootloader != "" {
		return n.Bootloader
	}
	return s.Bootloader
}

// GRUBFileProblems lists the [grub] files that could not be resolved to a
// readable regular file (errors name file, line and key). They matter only
// when a node boots with GRUB: wwserver check reports them then.
func (s *Server) GRUBFileProblems() []error { return s.grubProblems }

// GRUBARM64FileProblems: the same for grub.shim_arm64 and grub.grub_arm64,
// which matter only when an arm64 node boots (most servers have no arm64
// packages installed).
func (s *Server) GRUBARM64FileProblems() []error { return s.grubARM64Problems }

func checkLoader(v string) error {
	if v != LoaderIPXE && v != LoaderGRUB {
		return fmt.Errorf("must be %q or %q, got %q", LoaderIPXE, LoaderGRUB, v)
	}
	return nil
}

// checkBootloader validates the merged bootloader of node n (key
// "nodes.NAME", written as r; profile returns a profile's entry, nil when
// undefined), blaming the node or profile entry that set the value, so the
// error's file:line is where the value is written.
func checkBootloader(n *Node, key string, r *Entry, profile func(name string) *Entry, fail func(key, format string, a ...any)) {
	if n.Bootloader == "" {
		return
	}
	where := key + ".bootloader"
	if r.Bootloader == nil {
		for _, p := range r.Profiles { // the last profile setting it won the merge
			if pr := profile(p); pr != nil && pr.Bootloader != nil {
				where = "profiles." + p + ".bootloader"
			}
		}
	}
	if err := checkLoader(n.Bootloader); err != nil {
		fail(where, "%v", err)
	}
}

// resolveGRUBFiles follows the [grub] files' symlinks once and adds them
// to the boot files served under ShimName and GRUBName.
func (s *Server) resolveGRUBFiles(file string, loc *locator) {
	for _, f := range []struct {
		key, name, path string
		problems        *[]error
	}{
		{"grub.shim", ShimName, s.GRUB.Shim, &s.grubProblems}, {"grub.grub", GRUBName, s.GRUB.GRUB, &s.grubProblems},
		{"grub.shim_arm64", ShimARM64Name, s.GRUB.ShimARM64, &s.grubARM64Problems},
		{"grub.grub_arm64", GRUBARM64Name, s.GRUB.GRUBARM64, &s.grubARM64Problems},
	} {
		p, err := resolveRegular(filepath.Clean(f.path))
		if err != nil {
			*f.problems = append(*f.problems, &Error{File: file, Line: loc.line(f.key), Key: f.key,
				Msg: fmt.Sprintf("%s (served as %s): %v", f.path, f.name, err)})
			continue
		}
		s.bootFiles[f.name] = p
	}
}

// GRUBAnticipate is the TFTP window used when GRUB boots are served and
// tftp.anticipate is not set: 1, i.e. off. pin/tftp's window is sent blind
// (no RFC 7440 negotiation); GRUB drops packets of a burst (its efinet
// receive queue is short) and then waits for the 2 s retransmission, once
// per drop. Measured in the lab (OVMF Secure Boot, QEMU TCG, the lab
// image): booted 6m7s after power-on with a window of 8, 42 s with 1.
const GRUBAnticipate = 1

// UsesGRUB reports whether any machine boots with GRUB under this config:
// the server's default loader is GRUB, or a node (or its profile) says so.
func (s *Snapshot) UsesGRUB() bool {
	return s.Server.Bootloader == LoaderGRUB || (s.Nodes != nil && s.Nodes.AnyGRUB)
}

// TFTPAnticipate is the TFTP window to use: tftp.anticipate when it is
// set in wwserver.toml; otherwise its default (8) unless UsesGRUB, then
// GRUBAnticipate (Debian's signed GRUB fetches the kernel and initrds over
// TFTP, and a window slows that down by minutes).
func (s *Snapshot) TFTPAnticipate() int {
	if !s.Server.anticipateSet && s.UsesGRUB() {
		return GRUBAnticipate
	}
	return s.Server.TFTP.Anticipate
}
