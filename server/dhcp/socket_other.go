//go:build !linux

package dhcp

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// socketControl sets SO_BROADCAST; binding to an interface needs Linux.
func socketControl(iface string) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if iface != "" {
			return errors.New("dhcp.interface (SO_BINDTODEVICE) is only supported on Linux")
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

func syncData(f *os.File) error { return f.Sync() }

// newRawIO: the raw socket path (rawio_linux.go) is Linux only.
func newRawIO(net.PacketConn) (datagramReader, packetWriter, bool) { return nil, nil, false }
