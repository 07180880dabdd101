package tftp

import (
	"syscall"

	"github.com/wwcluster/ww/server/sockbuf"
)

// receiveBuffer is the listening socket's receive buffer. A 1,000-node
// mass reboot sends its read requests within a few milliseconds of the
// DHCP replies, and pin/tftp's read loop opens a socket per request before
// it reads the next one: the kernel's default (~200 KB, ~200 queued
// requests) dropped 489 of them in the boot storm (make storm).
const receiveBuffer = sockbuf.Burst

// listenControl sets the large receive buffer (best effort).
func listenControl(_, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) { sockbuf.SetReceive(fd, receiveBuffer) })
}
