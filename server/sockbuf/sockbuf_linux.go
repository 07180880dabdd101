// Package sockbuf sizes the receive buffers of the UDP sockets a mass
// reboot floods (DHCP port 67, TFTP port 69): the kernel's default (~200 KB)
// drops a 1,000-node burst before the server reads it.
package sockbuf

import "golang.org/x/sys/unix"

// Burst is the receive buffer both listeners ask for.
const Burst = 8 << 20

// SetReceive gives the socket fd a receive buffer of bytes: SO_RCVBUFFORCE
// as root (past net.core.rmem_max), else SO_RCVBUF (capped by it). Best
// effort: a smaller buffer only drops more of a burst.
func SetReceive(fd uintptr, bytes int) {
	if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bytes) != nil {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, bytes)
	}
}
