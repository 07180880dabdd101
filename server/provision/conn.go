package provision

import (
	"context"
	"net"
	"net/http"
	"syscall"
)

// connKey is the request context key of the request's connection (set by
// NewHTTPServer's ConnContext).
type connKey struct{}

func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// rawTCP is the raw socket of r's connection when it is plain TCP (not
// TLS, not a test's pipe), for socket options; nil otherwise.
func rawTCP(r *http.Request) syscall.RawConn {
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	if tc, ok := c.(*trackedConn); ok {
		c = tc.Conn
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tcp.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
