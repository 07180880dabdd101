package provision

import (
	"context"
	"net"
	"net/http"
)

// connKey is the request context key of the request's connection (set by
// NewHTTPServer's ConnContext).
type connKey struct{}

func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// trackedOf is r's connection when it came through a ConnLimiter (as every
// wwserver connection does); nil otherwise.
func trackedOf(r *http.Request) *trackedConn {
	c, _ := r.Context().Value(connKey{}).(*trackedConn)
	return c
}

// Write is the connection's Write; after holdNextWrite, once with MSG_MORE.
func (c *trackedConn) Write(p []byte) (int, error) {
	if c.more {
		c.more = false
		if n, err, ok := writeMore(c.Conn, p); ok {
			return n, err
		}
	}
	return c.Conn.Write(p)
}

// holdNextWrite sends the connection's next Write with MSG_MORE (more_linux.go):
// a response header flushed right before sendfile(2) then leaves in the
// same segments as the start of the body instead of as one of its own.
// Only the goroutine serving the connection may call it, and it must
// call it again with false after the write it meant (so that a flush with
// nothing to write cannot leave it set for a later response).
func (c *trackedConn) holdNextWrite(on bool) { c.more = on }
