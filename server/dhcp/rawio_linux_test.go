package dhcp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

func loopbackUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRawUDP: the raw recvmmsg/sendto path returns every datagram in order
// with its source, across batch boundaries, cuts an oversize datagram to
// maxPacket+1 bytes, writes from several goroutines at once, and reports
// a closed socket as net.ErrClosed.
func TestRawUDP(t *testing.T) {
	srv, cli := loopbackUDP(t), loopbackUDP(t)
	r := newRawUDP(srv)
	if r == nil {
		t.Fatal("no raw path for an IPv4 UDP socket")
	}
	if newRawUDP(newFakeConn()) != nil {
		t.Fatal("raw path for a non-UDP conn")
	}
	const n = 2*readBatch + 5
	var want [][]byte
	for i := 0; i < n; i++ {
		d := []byte(fmt.Sprintf("datagram %d", i))
		if i == n/2 {
			d = bytes.Repeat([]byte{'x'}, maxPacket+100)
		}
		want = append(want, d)
		if _, err := cli.WriteTo(d, srv.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	cliAddr := cli.LocalAddr().(*net.UDPAddr)
	for i, w := range want {
		got, src, err := r.ReadFrom()
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if len(w) > maxPacket {
			w = w[:maxPacket+1]
		}
		if !bytes.Equal(got, w) {
			t.Fatalf("datagram %d: got %d bytes %.20q, want %d bytes %.20q", i, len(got), got, len(w), w)
		}
		if src == nil || !src.IP.Equal(cliAddr.IP) || src.Port != cliAddr.Port {
			t.Fatalf("datagram %d from %v, want %v", i, src, cliAddr)
		}
	}

	// Replies from several goroutines, as the read loop and the lease
	// journal send them.
	const writers, each = 4, 8
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				msg := []byte(fmt.Sprintf("reply %d/%d", w, i))
				if n, err := r.WriteTo(msg, cliAddr); err != nil || n != len(msg) {
					errs <- fmt.Errorf("write %q: %d, %v", msg, n, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := cli.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	buf := make([]byte, 64)
	for len(seen) < writers*each {
		k, from, err := cli.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d replies: %v", len(seen), err)
		}
		if from.String() != srv.LocalAddr().String() {
			t.Fatalf("reply from %v, want %v", from, srv.LocalAddr())
		}
		seen[string(buf[:k])] = true
	}

	// A closed socket ends a blocked read with net.ErrClosed.
	done := make(chan error, 1)
	go func() {
		_, _, err := r.ReadFrom()
		done <- err
	}()
	srv.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed socket: %v, want net.ErrClosed", err)
	}
	if _, err := r.WriteTo([]byte("x"), cliAddr); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed socket: %v, want net.ErrClosed", err)
	}
}
