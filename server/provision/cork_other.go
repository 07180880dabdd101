//go:build !linux

package provision

import "syscall"

// setCork does nothing here (TCP_CORK is Linux's).
func setCork(syscall.RawConn, bool) {}
