package provision

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(inner, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first := <-accepted
	<-accepted
	// The third connection waits while two are open.
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while the limit is 2")
	case <-time.After(200 * time.Millisecond):
	}
	// sendfile stays available: the TCP conn's ReadFrom is promoted.
	if _, ok := first.(io.ReaderFrom); !ok {
		t.Error("accepted conn does not implement io.ReaderFrom (sendfile lost)")
	}
	first.Close()
	first.Close() // a second Close must not release twice
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("closing a connection did not let the waiting one in")
	}
	ln.Close()
	for range accepted {
	}
}
