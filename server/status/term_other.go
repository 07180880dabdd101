//go:build !linux

package status

import "os"

// IsTerminal reports whether f is a character device, an approximation of isatty.
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
