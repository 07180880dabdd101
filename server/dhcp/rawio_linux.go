package dhcp

import (
	"net"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawUDP reads and writes an IPv4 UDP socket with raw system calls:
// recvmmsg (up to readBatch datagrams per call) and sendto.
//
// Why raw: the socket is non-blocking, so both calls return at once.
// Through net.UDPConn every call is announced to the Go scheduler
// (entersyscall), and the first one after the process was idle wakes the
// runtime's sysmon thread and sets it polling every 20 µs for the next
// millisecond (sysmon was 11-15 % of the server's CPU under perfdhcp). A raw
// call skips the announcement. With the files backend the journal's fsyncs
// keep sysmon polling anyway (no gain measured there, BENCHMARKS.md, DHCP
// CPU). Waiting for the socket still parks the goroutine in the netpoller
// (syscall.RawConn), so no thread ever blocks in a raw call.
type rawUDP struct {
	conn *net.UDPConn
	rc   syscall.RawConn
	in   *datagrams // read side; one reader goroutine per socket
	next int        // next datagram of in to hand out
	got  int        // datagrams in the last batch
}

// readBatch is how many queued datagrams one recvmmsg takes.
const readBatch = 16

// datagrams is recvmmsg's receive area. The headers point into the same
// heap object, which the Go heap never moves.
type datagrams struct {
	hdrs  [readBatch]unix.Mmsghdr
	iovs  [readBatch]unix.Iovec
	names [readBatch]unix.RawSockaddrInet4
	bufs  [readBatch][maxPacket + 1]byte
}

// newRawUDP returns the raw reader and writer of c, or nil when c is not
// an IPv4 socket (the caller then uses c's own methods).
func newRawUDP(c net.PacketConn) *rawUDP {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return nil
	}
	if a, ok := uc.LocalAddr().(*net.UDPAddr); !ok || a.IP.To4() == nil {
		return nil
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	d := new(datagrams)
	for i := range d.hdrs {
		d.iovs[i].Base = &d.bufs[i][0]
		d.iovs[i].SetLen(len(d.bufs[i]))
		d.hdrs[i].Hdr.Iov = &d.iovs[i]
		d.hdrs[i].Hdr.SetIovlen(1)
		d.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&d.names[i]))
	}
	return &rawUDP{conn: uc, rc: rc, in: d}
}

// ReadFrom returns the next datagram (a view into the batch buffer, valid
// until the next call) and its source. Like net.UDPConn's, a datagram
// longer than buf's maxPacket+1 bytes is cut to that length, so the caller
// sees it as oversize.
func (u *rawUDP) ReadFrom() ([]byte, *net.UDPAddr, error) {
	if u.next >= u.got {
		n, err := u.recv()
		if err != nil {
			return nil, nil, err
		}
		u.next, u.got = 0, n
	}
	i := u.next
	u.next++
	h := &u.in.hdrs[i]
	sa := &u.in.names[i]
	var src *net.UDPAddr
	if h.Hdr.Namelen >= unix.SizeofSockaddrInet4 && sa.Family == unix.AF_INET {
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		src = &net.UDPAddr{IP: net.IPv4(sa.Addr[0], sa.Addr[1], sa.Addr[2], sa.Addr[3]), Port: int(p[0])<<8 | int(p[1])}
	}
	return u.in.bufs[i][:h.Len], src, nil
}

// recv fills the batch: at least one datagram, waiting for it in the
// netpoller.
func (u *rawUDP) recv() (int, error) {
	d := u.in
	for i := range d.hdrs {
		d.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		d.hdrs[i].Hdr.Flags = 0
		d.hdrs[i].Len = 0
	}
	var n int
	var errno syscall.Errno
	err := u.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&d.hdrs[0])), readBatch, 0, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait in the netpoller, then call again
			}
			n, errno = int(r), e
			return true
		}
	})
	runtime.KeepAlive(d)
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", errno)
	}
	if n <= 0 {
		return 0, os.NewSyscallError("recvmmsg", unix.EIO) // cannot happen without an error
	}
	return n, nil
}

// WriteTo sends b to dst (an IPv4 address; others go through the
// net.UDPConn). Safe for concurrent use: each call has its own address.
func (u *rawUDP) WriteTo(b []byte, dst net.Addr) (int, error) {
	ua, ok := dst.(*net.UDPAddr)
	var ip4 net.IP
	if ok {
		ip4 = ua.IP.To4()
	}
	if ip4 == nil || len(b) == 0 || ua.Port < 0 || ua.Port > 0xffff {
		return u.conn.WriteTo(b, dst)
	}
	sa := &unix.RawSockaddrInet4{Family: unix.AF_INET}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(ua.Port>>8), byte(ua.Port)
	copy(sa.Addr[:], ip4)
	var n int
	var errno syscall.Errno
	err := u.rc.Write(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0,
				uintptr(unsafe.Pointer(sa)), unix.SizeofSockaddrInet4)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			n, errno = int(r), e
			return true
		}
	})
	runtime.KeepAlive(b)
	runtime.KeepAlive(sa)
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: u.conn.LocalAddr(), Addr: dst, Err: os.NewSyscallError("sendto", errno)}
	}
	return n, nil
}

// newRawIO returns c's raw reader and writer (ok false: use c's methods).
func newRawIO(c net.PacketConn) (datagramReader, packetWriter, bool) {
	r := newRawUDP(c)
	if r == nil {
		return nil, nil, false
	}
	return r, r, true
}
