//go:build !linux

package tftp

import "syscall"

// listenControl keeps the system's receive buffer.
func listenControl(_, _ string, _ syscall.RawConn) error { return nil }
