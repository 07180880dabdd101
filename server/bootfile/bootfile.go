// Package bootfile decides what a netbooting machine is told to fetch
// first, from what its DHCP request says about its firmware: the client
// architecture (option 93), the vendor class (60: PXEClient, HTTPClient)
// and whether iPXE already runs (user class 77, option 175). The answer is
// a boot file and the protocol that fetches it: a binary of tftp.dir over
// TFTP, the same over HTTP (UEFI HTTP boot, /ipxe-bin/), or the node's boot
// script for a boot loader that is already running.
//
// The table is pure (no I/O, no packets): server/dhcp puts its answer in
// a reply, and the files it can name (Slots, configured in wwserver.toml)
// are the ones TFTP and /ipxe-bin/ serve even through a symlink out of
// tftp.dir (config.Server.BootFile).
package bootfile

import "github.com/insomniacslk/dhcp/iana"

// Vendor class identifiers (option 60) that firmware sends and replies echo.
const (
	VendorPXE  = "PXEClient"
	VendorHTTP = "HTTPClient"
)

// Protocol is how the client fetches what a rule names.
type Protocol string

const (
	// TFTP: a file name in tftp.dir (BIOS and UEFI PXE).
	TFTP Protocol = "tftp"
	// HTTP: a file of tftp.dir under nodeapi.IPXEBin (UEFI HTTP boot).
	HTTP Protocol = "http"
	// Script: the node's boot script route, for a running boot loader.
	Script Protocol = "script"
)

// Loader is the boot loader the node is to be started with (its
// bootloader key, else the server's): the values of config.LoaderIPXE and
// config.LoaderGRUB.
type Loader string

// Boot loaders.
const (
	IPXE Loader = "ipxe" // iPXE, then the node's iPXE script
	GRUB Loader = "grub" // shim, then GRUB, then the node's GRUB config (Secure Boot)
)

// Firmware is what a DHCP request tells about the booting firmware.
type Firmware struct {
	PXE     bool      // option 60 starts with PXEClient
	HTTP    bool      // option 60 starts with HTTPClient
	IPXE    bool      // user class (77) contains "iPXE", or option 175 present
	Arch    iana.Arch // first entry of option 93
	HasArch bool
}

// ARM64 reports whether the firmware is arm64 UEFI (option 93 = 11 PXE,
// 19 HTTP boot).
func (f Firmware) ARM64() bool {
	return f.HasArch && (f.Arch == iana.EFI_ARM64 || f.Arch == iana.EFI_ARM64_HTTP)
}

// Netboot reports whether the client is firmware or a boot loader (as
// opposed to an OS DHCP client renewing its lease). Only netboot clients
// get a boot file, so a booted node's renewals don't reset its status.
func (f Firmware) Netboot() bool { return f.PXE || f.HTTP || f.IPXE || f.HasArch }

// Slot is one configured boot file; its value is the wwserver.toml key
// that names the file.
type Slot string

// The configured boot files.
const (
	SlotBIOS  Slot = "dhcp.bios_file"      // x86 BIOS PXE, option 93 = 0
	SlotEFI   Slot = "dhcp.efi_file"       // x86 UEFI PXE, option 93 = 6, 7, 9
	SlotARM64 Slot = "dhcp.arm64_file"     // ARM64 UEFI, option 93 = 11 (PXE) and 19 (HTTP)
	SlotHTTP  Slot = "dhcp.http_boot_file" // UEFI HTTP boot, vendor class HTTPClient
	// SlotShim is the shim of nodes whose boot loader is GRUB (x86-64
	// UEFI PXE and HTTP boot): wwserver.toml grub.shim, a path on the
	// server, handed out under the name config.ShimName. Not one of
	// Slots (those name files in tftp.dir).
	SlotShim Slot = "grub.shim"
	// SlotShimARM64 is the shim of arm64 UEFI nodes (option 93 = 11, 19):
	// wwserver.toml grub.shim_arm64, served as config.ShimARM64Name.
	SlotShimARM64 Slot = "grub.shim_arm64"
)

// Slots lists the dhcp.* slots (files of tftp.dir), in the order of the
// keys in wwserver.toml.
func Slots() []Slot { return []Slot{SlotBIOS, SlotEFI, SlotARM64, SlotHTTP} }

// Files are the configured boot file names ("" = none configured).
type Files struct {
	BIOS, EFI, ARM64, HTTP string
	// Shim is the name the shim is served under (SlotShim); ShimARM64
	// the arm64 shim's (SlotShimARM64).
	Shim, ShimARM64 string
}

// File is the name configured for slot s.
func (f Files) File(s Slot) string {
	switch s {
	case SlotBIOS:
		return f.BIOS
	case SlotEFI:
		return f.EFI
	case SlotARM64:
		return f.ARM64
	case SlotHTTP:
		return f.HTTP
	case SlotShim:
		return f.Shim
	case SlotShimARM64:
		return f.ShimARM64
	}
	return ""
}
