package bootfile

import (
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/nodeapi"
)

// Moved from server/dhcp (TestBootDecisionTable) with the table.
func TestBootDecisionTable(t *testing.T) {
	files := Files{BIOS: "undionly.kpxe", EFI: "snponly.efi", HTTP: "ipxe.efi", ShimARM64: "shimaa64.efi"}
	withARM := files
	withARM.ARM64 = "arm64.efi"
	const base = "http://10.0.2.1:9873"
	const mac = "52:54:00:00:00:01"
	cases := []struct {
		name       string
		files      Files
		fw         Firmware
		rule, file string
		protocol   Protocol
		vendor     string
	}{
		{"bios", files, Firmware{Arch: 0, HasArch: true, PXE: true}, "bios", "undionly.kpxe", TFTP, VendorPXE},
		{"efi ia32", files, Firmware{Arch: 6, HasArch: true, PXE: true}, "efi", "snponly.efi", TFTP, VendorPXE},
		{"efi bc", files, Firmware{Arch: 7, HasArch: true, PXE: true}, "efi", "snponly.efi", TFTP, VendorPXE},
		{"efi x64", files, Firmware{Arch: 9, HasArch: true}, "efi", "snponly.efi", TFTP, ""},
		{"arm64 unset: GRUB", files, Firmware{Arch: 11, HasArch: true, PXE: true}, "grub-arm64", "shimaa64.efi", TFTP, VendorPXE},
		{"arm64 set", withARM, Firmware{Arch: 11, HasArch: true, PXE: true}, "arm64", "arm64.efi", TFTP, VendorPXE},
		{"ipxe wins over arch", files, Firmware{Arch: 7, HasArch: true, PXE: true, IPXE: true}, "ipxe", "http://10.0.2.1:9873/ipxe/" + mac, Script, VendorPXE},
		{"ipxe without pxe", files, Firmware{IPXE: true}, "ipxe", "http://10.0.2.1:9873/ipxe/" + mac, Script, ""},
		{"http boot", files, Firmware{HTTP: true, Arch: 16, HasArch: true}, "http", "http://10.0.2.1:9873/ipxe-bin/ipxe.efi", HTTP, VendorHTTP},
		{"http arm64 unset: GRUB", files, Firmware{HTTP: true, Arch: 19, HasArch: true}, "grub-http-arm64", "http://10.0.2.1:9873/ipxe-bin/shimaa64.efi", HTTP, VendorHTTP},
		{"http arm64 set", withARM, Firmware{HTTP: true, Arch: 19, HasArch: true}, "http-arm64", "http://10.0.2.1:9873/ipxe-bin/arm64.efi", HTTP, VendorHTTP},
		{"pxe without arch", files, Firmware{PXE: true}, "pxe-no-arch", "undionly.kpxe", TFTP, VendorPXE},
		{"unknown arch", files, Firmware{Arch: 2, HasArch: true, PXE: true}, "", "", "", VendorPXE},
		{"plain dhcp client", files, Firmware{}, "", "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.files, tc.fw)
			if got := d.BootFile(base, mac); d.Rule != tc.rule || got != tc.file || d.Vendor != tc.vendor || d.Protocol != tc.protocol {
				t.Errorf("Decide = %+v, boot file %q; want rule %q protocol %q file %q vendor %q",
					d, got, tc.rule, tc.protocol, tc.file, tc.vendor)
			}
		})
	}
}

func TestNetboot(t *testing.T) {
	for _, tc := range []struct {
		fw   Firmware
		want bool
	}{
		{Firmware{}, false},
		{Firmware{PXE: true}, true},
		{Firmware{HTTP: true}, true},
		{Firmware{IPXE: true}, true},
		{Firmware{HasArch: true}, true}, // arch 0 (BIOS) is an architecture too
	} {
		if got := tc.fw.Netboot(); got != tc.want {
			t.Errorf("%+v.Netboot() = %v, want %v", tc.fw, got, tc.want)
		}
	}
}

// TestRulesWellFormed: every row can answer: a script row names a route,
// a file row a slot that Files knows.
func TestRulesWellFormed(t *testing.T) {
	all := Files{BIOS: "b", EFI: "e", ARM64: "a", HTTP: "h", Shim: "s", ShimARM64: "sa"}
	seen := map[string]bool{}
	for _, r := range Rules() {
		if r.Name == "" || seen[r.Name] || r.Match == nil {
			t.Errorf("rule %+v: empty, repeated name or no match", r)
		}
		seen[r.Name] = true
		switch r.Protocol {
		case Script:
			if r.Route == "" || r.File != "" {
				t.Errorf("script rule %s: route %q, slot %q", r.Name, r.Route, r.File)
			}
		case TFTP, HTTP:
			if all.File(r.File) == "" || r.Route != "" {
				t.Errorf("file rule %s: slot %q unknown or route %q", r.Name, r.File, r.Route)
			}
		default:
			t.Errorf("rule %s: protocol %q", r.Name, r.Protocol)
		}
	}
}

func TestSlots(t *testing.T) {
	f := Files{BIOS: "b", EFI: "e", ARM64: "a", HTTP: "h"}
	got := ""
	for _, s := range Slots() {
		got += string(s) + "=" + f.File(s) + " "
	}
	want := "dhcp.bios_file=b dhcp.efi_file=e dhcp.arm64_file=a dhcp.http_boot_file=h "
	if got != want {
		t.Errorf("slots = %q, want %q", got, want)
	}
	if f.File("dhcp.nope") != "" {
		t.Error("unknown slot has a file")
	}
	if d := (Decision{Protocol: Script, Route: nodeapi.IPXE}); d.BootFile("http://s", "m") != "http://s/ipxe/m" {
		t.Errorf("script boot file = %q", d.BootFile("http://s", "m"))
	}
}

// TestGRUBRows: a node whose boot loader is GRUB gets the shim on x86-64
// UEFI PXE (arch 7, 9) and UEFI HTTP boot (arch 16); everywhere else (BIOS,
// IA32, ARM64, a running iPXE) it gets what an iPXE node gets. An iPXE node
// never gets the shim.
func TestGRUBRows(t *testing.T) {
	files := Files{BIOS: "undionly.kpxe", EFI: "snponly.efi", HTTP: "ipxe.efi", Shim: "shimx64.efi"}
	const base = "http://10.0.2.1:9873"
	const mac = "52:54:00:00:00:01"
	cases := []struct {
		name       string
		fw         Firmware
		rule, file string
	}{
		{"efi bc", Firmware{Arch: 7, HasArch: true, PXE: true}, "grub-efi", "shimx64.efi"},
		{"efi x64", Firmware{Arch: 9, HasArch: true, PXE: true}, "grub-efi", "shimx64.efi"},
		{"http boot x64", Firmware{HTTP: true, Arch: 16, HasArch: true}, "grub-http", base + "/ipxe-bin/shimx64.efi"},
		{"http boot without arch", Firmware{HTTP: true}, "http", base + "/ipxe-bin/ipxe.efi"},
		{"efi ia32", Firmware{Arch: 6, HasArch: true, PXE: true}, "efi", "snponly.efi"},
		{"bios", Firmware{Arch: 0, HasArch: true, PXE: true}, "bios", "undionly.kpxe"},
		{"ipxe running", Firmware{Arch: 7, HasArch: true, IPXE: true}, "ipxe", base + "/ipxe/" + mac},
	}
	for _, tc := range cases {
		d := DecideFor(files, tc.fw, GRUB)
		if got := d.BootFile(base, mac); d.Rule != tc.rule || got != tc.file {
			t.Errorf("%s: GRUB node: rule %q, boot file %q; want %q, %q", tc.name, d.Rule, got, tc.rule, tc.file)
		}
		ipxe := DecideFor(files, tc.fw, IPXE)
		if ipxe != Decide(files, tc.fw) {
			t.Errorf("%s: Decide differs from DecideFor(IPXE)", tc.name)
		}
		if strings.HasPrefix(ipxe.Rule, "grub") || strings.Contains(ipxe.BootFile(base, mac), "shim") {
			t.Errorf("%s: iPXE node got %+v", tc.name, ipxe)
		}
	}
}

// TestARM64Rows: arm64 firmware (option 93 = 11 PXE, 19 HTTP) gets the
// arm64 shim whatever the node's loader, since Debian has no arm64 iPXE;
// only a configured dhcp.arm64_file (an admin's arm64 iPXE) gives an iPXE
// node that instead. A GRUB node always gets the shim, and an x86 machine
// never does.
func TestARM64Rows(t *testing.T) {
	files := Files{BIOS: "undionly.kpxe", EFI: "snponly.efi", HTTP: "ipxe.efi", Shim: "shimx64.efi", ShimARM64: "shimaa64.efi"}
	withIPXE := files
	withIPXE.ARM64 = "ipxe-arm64.efi"
	const base = "http://10.0.2.1:9873"
	const mac = "52:54:00:00:00:01"
	pxe := Firmware{Arch: 11, HasArch: true, PXE: true}
	http := Firmware{Arch: 19, HasArch: true, HTTP: true}
	cases := []struct {
		name       string
		files      Files
		fw         Firmware
		loader     Loader
		rule, file string
	}{
		{"pxe ipxe node", files, pxe, IPXE, "grub-arm64", "shimaa64.efi"},
		{"pxe grub node", files, pxe, GRUB, "grub-arm64", "shimaa64.efi"},
		{"http ipxe node", files, http, IPXE, "grub-http-arm64", base + "/ipxe-bin/shimaa64.efi"},
		{"http grub node", files, http, GRUB, "grub-http-arm64", base + "/ipxe-bin/shimaa64.efi"},
		{"pxe ipxe node, arm64 iPXE", withIPXE, pxe, IPXE, "arm64", "ipxe-arm64.efi"},
		{"pxe grub node, arm64 iPXE", withIPXE, pxe, GRUB, "grub-arm64", "shimaa64.efi"},
		{"http ipxe node, arm64 iPXE", withIPXE, http, IPXE, "http-arm64", base + "/ipxe-bin/ipxe-arm64.efi"},
		{"x86 pxe grub node", files, Firmware{Arch: 7, HasArch: true, PXE: true}, GRUB, "grub-efi", "shimx64.efi"},
		{"x86 pxe ipxe node", files, Firmware{Arch: 7, HasArch: true, PXE: true}, IPXE, "efi", "snponly.efi"},
		{"ipxe running on arm64", files, Firmware{Arch: 11, HasArch: true, IPXE: true}, IPXE, "ipxe", base + "/ipxe/" + mac},
	}
	for _, tc := range cases {
		d := DecideFor(tc.files, tc.fw, tc.loader)
		if got := d.BootFile(base, mac); d.Rule != tc.rule || got != tc.file {
			t.Errorf("%s: rule %q, boot file %q; want %q, %q", tc.name, d.Rule, got, tc.rule, tc.file)
		}
	}
	if !pxe.ARM64() || !http.ARM64() || (Firmware{Arch: 7, HasArch: true}).ARM64() || (Firmware{Arch: 0}).ARM64() {
		t.Error("Firmware.ARM64 wrong")
	}
}
