package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Firmware of a VM.
type Firmware string

const (
	// BIOS is SeaBIOS with QEMU's iPXE option ROM on the NIC: iPXE does
	// DHCP itself and fetches the per-node script over HTTP.
	BIOS Firmware = "bios"
	// UEFI is OVMF with no option ROM on the NIC (romfile=): the
	// firmware's own PXE asks DHCP with arch 7 and TFTPs snponly.efi.
	UEFI Firmware = "uefi"
	// UEFIHTTP is OVMF with its PXE turned off (fw_cfg
	// opt/org.tianocore/IPv4PXESupport and IPv6PXESupport = no), so the
	// boot manager's network option is UEFI HTTP boot: DHCP with vendor
	// class HTTPClient, then the boot file URL (/ipxe-bin/ipxe.efi).
	UEFIHTTP Firmware = "uefi-http"
	// UEFIIPXE is OVMF with QEMU's iPXE EFI option ROM on the NIC (its
	// default efi-virtio.rom, as a QEMU or libvirt UEFI VM has it, and as
	// the BIOS node has QEMU's iPXE ROM): the boot manager starts iPXE
	// from the ROM, which does DHCP itself; no firmware PXE, no TFTP.
	UEFIIPXE Firmware = "uefi-ipxe"
	// ARM64 is an arm64 QEMU virt machine (cortex-a57) with the EDK2
	// firmware of qemu-efi-aarch64 and no option ROM on the NIC: its own
	// PXE asks DHCP with arch 11 and TFTPs the arm64 shim.
	ARM64 Firmware = "arm64"
	// ARM64HTTP is ARM64 with its PXE turned off (fw_cfg, as UEFIHTTP):
	// UEFI HTTP boot, DHCP arch 19.
	ARM64HTTP Firmware = "arm64-http"
)

// VMOptions for StartVM.
type VMOptions struct {
	Name     string // used for the log file names; required
	MAC      string // of the virtio NIC; required
	Firmware Firmware
	MemoryMB int // default 1024 (the image and its tmpfs copy need RAM)

	// Console, when set, makes the serial port QEMU's stdio (mon:stdio,
	// Ctrl-A X quits) with output going to Console as well as to the serial
	// log, and input from Stdin. QEMU then stays in the caller's process
	// group, since it needs the terminal.
	Console io.Writer
	Stdin   *os.File

	// Kernel, Initrd, Append boot directly instead of from the network.
	Kernel, Initrd, Append string
	// NoTap leaves the NIC without a network backend.
	NoTap bool
	// ExtraNICs are QEMU NIC models (e1000, rtl8139, …) added without a
	// backend, to check that the image has their drivers.
	ExtraNICs []string
	// TapNICs are MACs of more virtio NICs, each on its own tap on the
	// lab's bridge, without a boot ROM (second NICs, bond members).
	TapNICs []string
	// AssetTag sets the SMBIOS chassis asset tag (type 3), where wwclient
	// reads a node's asset key.
	AssetTag string
	// SecureBoot (Firmware UEFI or UEFIHTTP) boots OVMF's Secure Boot
	// build on a q35 machine with SMM (its variable store can only be
	// written from SMM) and a copy of the variable store with Microsoft's
	// keys enrolled: Secure Boot enforcing, so only binaries signed for
	// the Microsoft UEFI CA (shim) or by a key shim trusts start.
	SecureBoot bool
}

// VM is a running QEMU.
type VM struct {
	*Proc
	Name      string
	MAC       string
	Tap       string
	Firmware  Firmware
	SerialLog string
	Started   time.Time
}

// tapNICArgs appends a virtio NIC on a new tap, without boot ROM, per MAC.
func (l *Lab) tapNICArgs(ctx context.Context, args []string, macs []string) ([]string, error) {
	for i, mac := range macs {
		tap, err := l.AddTap(ctx)
		if err != nil {
			return nil, err
		}
		args = append(args, "-netdev", fmt.Sprintf("tap,id=t%d,ifname=%s,script=no,downscript=no", i, tap),
			"-device", fmt.Sprintf("virtio-net-pci,mac=%s,netdev=t%d,romfile=", mac, i))
	}
	return args, nil
}

// WaitForLine waits for a serial console line containing substr.
func (v *VM) WaitForLine(ctx context.Context, substr string) (string, error) {
	return WaitForLine(ctx, v.SerialLog, substr, v.Done())
}

// SerialTail returns the last n lines of the serial console.
func (v *VM) SerialTail(n int) string { return Tail(v.SerialLog, n) }

// StartVM starts QEMU inside the namespace with a tap on the bridge:
// -accel tcg, -no-reboot (a reboot ends the VM), serial to Dir/NAME.serial.log.
func (l *Lab) StartVM(ctx context.Context, o VMOptions) (*VM, error) {
	if o.Name == "" || o.MAC == "" {
		return nil, errors.New("VM needs a name and a MAC")
	}
	if o.Firmware == "" {
		o.Firmware = BIOS
	}
	if o.MemoryMB == 0 {
		o.MemoryMB = 1024
	}
	qemu := l.Paths.QEMU
	if o.Firmware == ARM64 || o.Firmware == ARM64HTTP {
		qemu = l.Paths.QEMUARM64
	}
	if qemu == "" {
		return nil, fmt.Errorf("no QEMU for firmware %s (FindPaths; arm64: apt-get install qemu-system-arm qemu-efi-aarch64)", o.Firmware)
	}
	v := &VM{Name: o.Name, MAC: o.MAC, Firmware: o.Firmware, SerialLog: filepath.Join(l.Dir, o.Name+".serial.log")}
	if err := os.WriteFile(v.SerialLog, nil, 0o644); err != nil {
		return nil, err
	}
	args := []string{
		"-name", o.Name,
		"-accel", "tcg",
		"-m", strconv.Itoa(o.MemoryMB),
		"-smp", "1",
		"-nographic",
		"-no-reboot",
		"-monitor", "none",
	}
	if o.Console != nil {
		args = append(args, "-serial", "mon:stdio")
	} else {
		args = append(args, "-serial", "file:"+v.SerialLog)
	}
	nic := "virtio-net-pci,mac=" + o.MAC
	if !o.NoTap {
		tap, err := l.AddTap(ctx)
		if err != nil {
			return nil, err
		}
		v.Tap = tap
		args = append(args, "-netdev", fmt.Sprintf("tap,id=n0,ifname=%s,script=no,downscript=no", tap))
		nic += ",netdev=n0"
	}
	if o.Kernel == "" {
		nic += ",bootindex=1"
	}
	switch o.Firmware {
	case BIOS:
		if o.Kernel == "" {
			args = append(args, "-boot", "n")
		}
	case UEFI, UEFIHTTP, UEFIIPXE:
		if l.Paths.OVMFCode == "" {
			return nil, errors.New("no OVMF firmware (FindPaths)")
		}
		code, varsSrc := l.Paths.OVMFCode, l.Paths.OVMFVars
		if o.SecureBoot {
			if l.Paths.OVMFSecureCode == "" {
				return nil, errors.New("no Secure Boot OVMF (" + ovmfSecureCode + ", " + ovmfMSVars + ")")
			}
			code, varsSrc = l.Paths.OVMFSecureCode, l.Paths.OVMFMSVars
			args = append(args, "-machine", "q35,smm=on",
				"-global", "driver=cfi.pflash01,property=secure,value=on")
		}
		vars := filepath.Join(l.Dir, o.Name+".OVMF_VARS.fd")
		if err := copyFile(varsSrc, vars); err != nil {
			return nil, err
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
		if o.Firmware != UEFIIPXE {
			nic += ",romfile="
		}
		if o.Firmware == UEFIHTTP {
			args = append(args, noPXE...)
		}
	case ARM64, ARM64HTTP:
		if l.Paths.AAVMF == "" {
			return nil, errors.New("no arm64 UEFI firmware " + aavmf + " (apt-get install qemu-efi-aarch64)")
		}
		args = append(args, "-machine", "virt", "-cpu", "cortex-a57", "-bios", l.Paths.AAVMF)
		nic += ",romfile="
		if o.Firmware == ARM64HTTP {
			args = append(args, noPXE...)
		}
	default:
		return nil, fmt.Errorf("unknown firmware %q", o.Firmware)
	}
	if o.SecureBoot && o.Firmware != UEFI && o.Firmware != UEFIHTTP {
		return nil, errors.New("secure boot needs x86 UEFI firmware (OVMF)")
	}
	args = append(args, "-device", nic)
	for _, m := range o.ExtraNICs {
		args = append(args, "-device", m)
	}
	args, err := l.tapNICArgs(ctx, args, o.TapNICs)
	if err != nil {
		return nil, err
	}
	if o.AssetTag != "" {
		if strings.ContainsAny(o.AssetTag, ",=") {
			return nil, fmt.Errorf("asset tag %q: ',' and '=' cannot be passed to -smbios", o.AssetTag)
		}
		args = append(args, "-smbios", "type=3,asset="+o.AssetTag)
	}
	if o.Kernel != "" {
		args = append(args, "-kernel", o.Kernel)
		if o.Initrd != "" {
			args = append(args, "-initrd", o.Initrd)
		}
		if o.Append != "" {
			args = append(args, "-append", o.Append)
		}
	}

	outPath := filepath.Join(l.Dir, o.Name+".qemu.log")
	out, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := l.nsCommand(qemu, args...)
	cmd.Stderr = out
	var serial *os.File
	if o.Console != nil {
		// Written by os/exec's copying goroutine until QEMU exits: closed
		// only then (a write error would stop the copy and close the pipe).
		serial, err = os.OpenFile(v.SerialLog, os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		cmd.Stdout = io.MultiWriter(o.Console, serial)
		cmd.Stdin = o.Stdin
	} else {
		cmd.Stdout = out
	}
	p, err := startProc(l.Log, "qemu:"+o.Name, cmd, v.SerialLog, o.Console != nil)
	if err != nil {
		if serial != nil {
			serial.Close()
		}
		return nil, err
	}
	if serial != nil {
		go func() {
			<-p.Done()
			serial.Close()
		}()
	}
	v.Proc = p
	v.Started = time.Now()
	if err := l.track(p); err != nil {
		return nil, err
	}
	l.Log.Info("VM started", "vm", o.Name, "mac", o.MAC, "firmware", o.Firmware, "secure_boot", o.SecureBoot, "tap", v.Tap, "serial", v.SerialLog)
	return v, nil
}

// noPXE turns EDK2's PXE off (its boot manager's network entry is then
// UEFI HTTP boot).
var noPXE = []string{
	"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no",
	"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no",
}

// QEMULog is the path of a VM's QEMU stderr.
func (v *VM) QEMULog() string {
	return filepath.Join(filepath.Dir(v.SerialLog), v.Name+".qemu.log")
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
