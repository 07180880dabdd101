package bootfile

import (
	"github.com/insomniacslk/dhcp/iana"

	"github.com/wwcluster/ww/server/nodeapi"
)

// Rule is one row of the decision table: the first rule whose Match is
// true decides.
type Rule struct {
	Name     string
	Match    func(Firmware) bool
	Protocol Protocol
	// File is the slot handed out for TFTP and HTTP (its name may be
	// unset: then no boot file).
	File Slot
	// Route is the script route for Protocol Script.
	Route nodeapi.Route
	// Loader, when set, limits the rule to nodes booting with that loader
	// ("" matches every node).
	Loader Loader
}

// Rules returns the decision table, in order. A row for a boot loader
// other than iPXE names its Loader and its own slot (and, for a script,
// its route).
func Rules() []Rule {
	t := table()
	return t[:]
}

// ruleCount is the number of rows of table (TestRulesWellFormed fails on an
// empty row, which a too large count would leave).
const ruleCount = 11

// table is the decision table as an array: DecideFor, which runs for every
// DHCP packet, keeps it on the stack instead of allocating ~1 KB per packet.
func table() [ruleCount]Rule {
	return [ruleCount]Rule{
		{
			// iPXE is already running: hand it its per-node script.
			Name: "ipxe", Match: func(f Firmware) bool { return f.IPXE },
			Protocol: Script, Route: nodeapi.IPXE,
		},
		{
			// UEFI HTTP boot on arm64 of a GRUB node: the arm64 shim over
			// HTTP (/ipxe-bin/shimaa64.efi), which fetches grubaa64.efi.
			// Debian's signed GRUB has no http module and stops at grub>
			// there: PXE (arch 11) is the arm64 path that boots; this row
			// serves a GRUB with http built in (grub.grub_arm64).
			Name: "grub-http-arm64", Loader: GRUB,
			Match:    func(f Firmware) bool { return f.HTTP && f.HasArch && f.Arch == iana.EFI_ARM64_HTTP },
			Protocol: HTTP, File: SlotShimARM64,
		},
		{
			// UEFI HTTP boot on ARM64: the ARM64 iPXE binary over HTTP.
			Name: "http-arm64", Match: func(f Firmware) bool { return f.HTTP && f.HasArch && f.Arch == iana.EFI_ARM64_HTTP },
			Protocol: HTTP, File: SlotARM64,
		},
		{
			// UEFI HTTP boot on x86-64 of a GRUB node: the signed shim over
			// HTTP (/ipxe-bin/shimx64.efi); shim fetches grubx64.efi next
			// to it, GRUB then GET /grub/grub.cfg and /grub/{mac}.
			Name: "grub-http", Loader: GRUB,
			Match:    func(f Firmware) bool { return f.HTTP && f.HasArch && f.Arch == iana.EFI_X86_64_HTTP },
			Protocol: HTTP, File: SlotShim,
		},
		{
			// UEFI HTTP boot (vendor class HTTPClient): the EFI iPXE binary over HTTP.
			Name: "http", Match: func(f Firmware) bool { return f.HTTP },
			Protocol: HTTP, File: SlotHTTP,
		},
		{
			Name: "bios", Match: func(f Firmware) bool { return f.HasArch && f.Arch == iana.INTEL_X86PC },
			Protocol: TFTP, File: SlotBIOS,
		},
		{
			// x86-64 UEFI PXE of a GRUB node (Secure Boot): the signed shim
			// over TFTP; shim asks for grubx64.efi, GRUB for
			// /grub/grub.cfg (made by wwserver), which loads /grub/{mac}
			// over HTTP. (7 and 9 are both x86-64 in practice: RFC 4578's
			// table has them swapped against what firmware sends.)
			Name: "grub-efi", Loader: GRUB, Match: func(f Firmware) bool {
				return f.HasArch && (f.Arch == iana.EFI_X86_64 || f.Arch == iana.EFI_BC)
			},
			Protocol: TFTP, File: SlotShim,
		},
		{
			Name: "efi", Match: func(f Firmware) bool {
				return f.HasArch && (f.Arch == iana.EFI_IA32 || f.Arch == iana.EFI_X86_64 || f.Arch == iana.EFI_BC)
			},
			Protocol: TFTP, File: SlotEFI,
		},
		{
			// arm64 UEFI PXE of a GRUB node: the signed arm64 shim over
			// TFTP; shim asks for grubaa64.efi, GRUB for /grub/grub.cfg.
			Name: "grub-arm64", Loader: GRUB, Match: func(f Firmware) bool { return f.HasArch && f.Arch == iana.EFI_ARM64 },
			Protocol: TFTP, File: SlotShimARM64,
		},
		{
			Name: "arm64", Match: func(f Firmware) bool { return f.HasArch && f.Arch == iana.EFI_ARM64 },
			Protocol: TFTP, File: SlotARM64,
		},
		{
			// Old PXE ROMs that send no option 93 are BIOS.
			Name: "pxe-no-arch", Match: func(f Firmware) bool { return f.PXE && !f.HasArch },
			Protocol: TFTP, File: SlotBIOS,
		},
	}
}

// Decision is the table's answer for one client.
type Decision struct {
	Rule     string // name of the matching rule, "" when none matched
	Protocol Protocol
	// File is the boot file's name for TFTP and HTTP ("" when its slot is
	// not configured: no boot file).
	File  string
	Route nodeapi.Route // the script route, for Script
	// Vendor is echoed as option 60 ("PXEClient", "HTTPClient" or "").
	Vendor string
}

// Decide runs the decision table for firmware fw with the boot files
// files, for a node booting with iPXE.
func Decide(files Files, fw Firmware) Decision { return DecideFor(files, fw, IPXE) }

// DecideFor runs the decision table for firmware fw with the boot files
// files, for a node booting with loader: rows of another loader are
// skipped. A GRUB node on firmware without a GRUB row (BIOS, IA32) gets
// the iPXE rows. arm64 firmware boots GRUB unless dhcp.arm64_file names
// an arm64 iPXE (Debian ships none).
func DecideFor(files Files, fw Firmware, loader Loader) Decision {
	if fw.ARM64() && files.ARM64 == "" {
		loader = GRUB
	}
	var d Decision
	switch {
	case fw.HTTP:
		d.Vendor = VendorHTTP
	case fw.PXE:
		d.Vendor = VendorPXE
	}
	t := table()
	for _, r := range &t {
		if r.Loader != "" && r.Loader != loader {
			continue
		}
		if r.Match(fw) {
			d.Rule, d.Protocol, d.Route = r.Name, r.Protocol, r.Route
			if r.Protocol != Script {
				d.File = files.File(r.File)
			}
			return d
		}
	}
	return d
}

// BootFile is the DHCP boot file (siaddr's file, option 67) for the node
// with mac when the server's base URL is base: a TFTP name as it is, an
// HTTP file's or the script's URL; "" means no boot file.
func (d Decision) BootFile(base, mac string) string {
	switch d.Protocol {
	case Script:
		return d.Route.URL(base, mac)
	case HTTP:
		if d.File == "" {
			return ""
		}
		return nodeapi.IPXEBinURL(base, d.File)
	}
	return d.File
}
