package dhcp

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/wwcluster/ww/server/sockbuf"
)

// socketControl sets SO_BROADCAST, a large receive buffer (a mass reboot
// of 1,000 nodes sends their DISCOVERs within a few milliseconds: the
// kernel's default dropped 723 of them in the boot storm) and, for a named
// interface, SO_BINDTODEVICE.
func socketControl(iface string) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				serr = fmt.Errorf("set SO_BROADCAST: %w", serr)
				return
			}
			sockbuf.SetReceive(fd, sockbuf.Burst)
			if iface != "" {
				if serr = unix.BindToDevice(int(fd), iface); serr != nil {
					serr = fmt.Errorf("bind to device %s: %w", iface, serr)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// syncData makes f's data durable (fdatasync: no inode timestamps).
func syncData(f *os.File) error {
	return unix.Fdatasync(int(f.Fd()))
}
