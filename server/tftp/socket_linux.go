package tftp

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// receiveBuffer is the listening socket's receive buffer. A 1,000-node
// mass reboot sends its read requests within a few milliseconds of the
// DHCP replies, and pin/tftp's read loop opens a socket per request before
// it reads the next one: the kernel's default (~200 KB, ~200 queued
// requests) dropped 489 of them in the boot storm (make storm).
const receiveBuffer = 8 << 20

// listenControl sets the large receive buffer: SO_RCVBUFFORCE as root
// (past net.core.rmem_max), else SO_RCVBUF (capped by it). Best effort.
func listenControl(_, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, receiveBuffer) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, receiveBuffer)
		}
	})
}
