package provision

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// setCork sets or clears TCP_CORK: while set, the kernel sends only full
// segments, so a response header written on its own leaves in the same
// segments as the start of the body that sendfile(2) adds (nginx's
// tcp_nopush). Clearing it sends what is left at once.
func setCork(rc syscall.RawConn, on bool) {
	v := 0
	if on {
		v = 1
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, v)
	})
}
