package dhcp

import (
	"bytes"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/wwcluster/ww/server/bootfile"
	"github.com/wwcluster/ww/server/config"
)

// Vendor class identifiers (option 60).
const (
	vendorPXE  = bootfile.VendorPXE
	vendorHTTP = bootfile.VendorHTTP
)

// optionIPXEEncap is option 175, iPXE's encapsulated options: iPXE sends
// it, and reads its settings from it in replies.
const optionIPXEEncap = 175

// client is what a request tells about the booting firmware.
type client struct {
	mac    string // normalised
	vendor string // option 60
	bootfile.Firmware
}

func classify(req *dhcpv4.DHCPv4, mac string) client {
	c := client{mac: mac}
	if v := req.Options.Get(dhcpv4.OptionClassIdentifier); v != nil {
		c.vendor = string(v)
		c.PXE = strings.HasPrefix(c.vendor, vendorPXE)
		c.HTTP = strings.HasPrefix(c.vendor, vendorHTTP)
	}
	if uc := req.Options.Get(dhcpv4.OptionUserClassInformation); bytes.Contains(uc, []byte("iPXE")) {
		c.IPXE = true
	}
	if req.Options.Has(dhcpv4.GenericOptionCode(optionIPXEEncap)) {
		c.IPXE = true
	}
	if a := req.ClientArch(); len(a) > 0 {
		c.Arch = a[0]
		c.HasArch = true
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

// decideBoot runs the boot file table (server/bootfile) for c, the
// firmware of node n (nil: an unknown MAC) which boots with n's boot
// loader (bootloader key, else the server's).
func decideBoot(s *config.Server, n *config.Node, c client) bootDecision {
	d := bootfile.DecideFor(s.BootFiles(), c.Firmware, bootfile.Loader(s.LoaderFor(n)))
	return bootDecision{Rule: d.Rule, File: d.BootFile(s.URL(), c.mac), Vendor: d.Vendor}
}
