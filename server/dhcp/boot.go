package dhcp

import (
	"bytes"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/wwcluster/ww/server/config"
)

// Vendor class identifiers (option 60).
const (
	vendorPXE  = "PXEClient"
	vendorHTTP = "HTTPClient"
)

// optionIPXEEncap is option 175, iPXE's encapsulated options: iPXE sends
// it, and reads its settings from it in replies.
const optionIPXEEncap = 175

// IPXEBinRoute is the HTTP route under which UEFI HTTP-boot clients fetch
// an iPXE binary from the TFTP directory: URL()+IPXEBinRoute+file.
const IPXEBinRoute = "/ipxe-bin/"

// client is what a request tells about the booting firmware.
type client struct {
	mac     string    // normalised
	vendor  string    // option 60
	pxe     bool      // option 60 starts with PXEClient
	http    bool      // option 60 starts with HTTPClient
	ipxe    bool      // user class (77) contains "iPXE", or option 175 present
	arch    iana.Arch // first entry of option 93
	hasArch bool
}

// netboot reports whether the client is firmware or a boot loader (as
// opposed to an OS DHCP client renewing its lease). Only netboot clients
// get a boot file, so a booted node's renewals don't reset its status.
func (c client) netboot() bool { return c.pxe || c.http || c.ipxe || c.hasArch }

func classify(req *dhcpv4.DHCPv4, mac string) client {
	c := client{mac: mac}
	if v := req.Options.Get(dhcpv4.OptionClassIdentifier); v != nil {
		c.vendor = string(v)
		c.pxe = strings.HasPrefix(c.vendor, vendorPXE)
		c.http = strings.HasPrefix(c.vendor, vendorHTTP)
	}
	if uc := req.Options.Get(dhcpv4.OptionUserClassInformation); bytes.Contains(uc, []byte("iPXE")) {
		c.ipxe = true
	}
	if req.Options.Has(dhcpv4.GenericOptionCode(optionIPXEEncap)) {
		c.ipxe = true
	}
	if a := req.ClientArch(); len(a) > 0 {
		c.arch = a[0]
		c.hasArch = true
	}
	return c
}

// bootDecision is the boot file for one client.
type bootDecision struct {
	Rule string // name of the matching rule, "" when none matched
	File string // boot file (TFTP name or URL); "" means no boot file
	// Vendor is echoed as option 60 ("PXEClient", "HTTPClient" or "").
	Vendor string
}

// bootRule is one row of the boot-file decision table: the first rule
// whose match is true decides; file may return "" (no boot file).
type bootRule struct {
	name  string
	match func(c client) bool
	file  func(s *config.Server, c client) string
}

// bootRules returns the decision table, in order.
func bootRules() []bootRule {
	return []bootRule{
		{
			// iPXE is already running: hand it its per-node script.
			name:  "ipxe",
			match: func(c client) bool { return c.ipxe },
			file:  func(s *config.Server, c client) string { return s.URL() + "/ipxe/" + c.mac },
		},
		{
			// UEFI HTTP boot on ARM64: the ARM64 iPXE binary over HTTP.
			name:  "http-arm64",
			match: func(c client) bool { return c.http && c.hasArch && c.arch == iana.EFI_ARM64_HTTP },
			file: func(s *config.Server, c client) string {
				if s.DHCP.ARM64File == "" {
					return ""
				}
				return s.URL() + IPXEBinRoute + s.DHCP.ARM64File
			},
		},
		{
			// UEFI HTTP boot (vendor class HTTPClient): the EFI iPXE binary over HTTP.
			name:  "http",
			match: func(c client) bool { return c.http },
			file:  func(s *config.Server, c client) string { return s.URL() + IPXEBinRoute + s.DHCP.HTTPBootFile },
		},
		{
			name:  "bios",
			match: func(c client) bool { return c.hasArch && c.arch == iana.INTEL_X86PC },
			file:  func(s *config.Server, c client) string { return s.DHCP.BIOSFile },
		},
		{
			name: "efi",
			match: func(c client) bool {
				return c.hasArch && (c.arch == iana.EFI_IA32 || c.arch == iana.EFI_X86_64 || c.arch == iana.EFI_BC)
			},
			file: func(s *config.Server, c client) string { return s.DHCP.EFIFile },
		},
		{
			name:  "arm64",
			match: func(c client) bool { return c.hasArch && c.arch == iana.EFI_ARM64 },
			file:  func(s *config.Server, c client) string { return s.DHCP.ARM64File },
		},
		{
			// Old PXE ROMs that send no option 93 are BIOS.
			name:  "pxe-no-arch",
			match: func(c client) bool { return c.pxe && !c.hasArch },
			file:  func(s *config.Server, c client) string { return s.DHCP.BIOSFile },
		},
	}
}

// decideBoot runs the decision table.
func decideBoot(s *config.Server, c client) bootDecision {
	var d bootDecision
	switch {
	case c.http:
		d.Vendor = vendorHTTP
	case c.pxe:
		d.Vendor = vendorPXE
	}
	for _, r := range bootRules() {
		if r.match(c) {
			d.Rule = r.name
			d.File = r.file(s, c)
			return d
		}
	}
	return d
}
