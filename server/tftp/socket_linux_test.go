package tftp

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The listening socket gets the large receive buffer (a mass reboot's
// burst of read requests); as root past net.core.rmem_max.
func TestListenControlReceiveBuffer(t *testing.T) {
	lc := net.ListenConfig{Control: listenControl}
	pc, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	raw, err := pc.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	if err := raw.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	want := receiveBuffer  // the kernel reports twice what was set
	if os.Geteuid() != 0 { // SO_RCVBUF: capped by net.core.rmem_max
		b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
		if err != nil {
			t.Fatal(err)
		}
		if want, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			t.Fatal(err)
		}
		want = min(want, receiveBuffer)
	}
	if got < want {
		t.Fatalf("SO_RCVBUF = %d, want >= %d", got, want)
	}
}
