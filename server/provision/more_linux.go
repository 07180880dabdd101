package provision

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// writeMore writes p to c with MSG_MORE: the kernel holds a last partial
// segment back for what follows (nginx's tcp_nopush, without the two
// setsockopt calls of TCP_CORK). handled is false when c is no socket.
func writeMore(c net.Conn, p []byte) (n int, err error, handled bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, nil, false
	}
	var werr error
	err = rc.Write(func(fd uintptr) bool { // false: wait until writable (the write deadline applies)
		for n < len(p) {
			k, e := unix.SendmsgN(int(fd), p[n:], nil, nil, unix.MSG_MORE)
			if k > 0 {
				n += k
			}
			switch e {
			case nil, unix.EINTR:
			case unix.EAGAIN:
				return false
			default:
				werr = os.NewSyscallError("sendmsg", e)
				return true
			}
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return n, err, true
}
