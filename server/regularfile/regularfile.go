// Package regularfile opens files that clients asked for by name (TFTP,
// /ipxe-bin/) so that only regular files are ever served and nothing can
// block the server: opening a FIFO for reading waits for a writer, and
// opening a device can have side effects.
package regularfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegular is returned for directories, FIFOs, sockets and devices.
var ErrNotRegular = errors.New("not a regular file")

// Open opens name under root for reading if, and only if, it is a regular
// file (symlinks are followed inside root; os.Root stops them escaping).
//
// The name is stat'ed first so that FIFOs and devices are never opened;
// the open itself is non-blocking and the opened descriptor is checked
// again, so a file swapped for a FIFO in between cannot block either.
func Open(root *os.Root, name string) (*os.File, fs.FileInfo, error) {
	return open(name, root.Stat, root.OpenFile)
}

// OpenPath is Open for a path the admin configured (trusted: it may lead
// anywhere, e.g. Debian's /usr/lib/ipxe/ipxe.efi -> /boot/ipxe.efi), with
// the same refusal of anything but a regular file.
func OpenPath(path string) (*os.File, fs.FileInfo, error) {
	return open(path, os.Stat, os.OpenFile)
}

func open(name string, stat func(string) (fs.FileInfo, error),
	openFile func(string, int, fs.FileMode) (*os.File, error)) (*os.File, fs.FileInfo, error) {
	fi, err := stat(name)
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: %w (%s)", name, ErrNotRegular, kind(fi.Mode()))
	}
	f, err := openFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err = f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w (%s)", name, ErrNotRegular, kind(fi.Mode()))
	}
	return f, fi, nil
}

// kind names a non-regular file type for error messages.
func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	default:
		return "irregular file"
	}
}
