//go:build !linux

package provision

import "net"

// writeMore is a plain write here (MSG_MORE is Linux's).
func writeMore(net.Conn, []byte) (int, error, bool) { return 0, nil, false }
