package image

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// NoReserve as Options.Reserve lets an import use the file system to its end.
const NoReserve = -1

// DefaultReserve is the free space an import leaves on the file system of
// the served tree when Options.Reserve is 0: 5% of the file system, at
// least 1 GiB, but never more than half of it (a small file system stays
// usable). It keeps room for what the server writes next: node status,
// DHCP leases, and the images it builds from the new tree under state/.
func DefaultReserve(fsSize uint64) int64 {
	r := max(fsSize/20, 1<<30)
	return int64(min(r, fsSize/2))
}

// LimitError is an import refused because it would write more than
// --max-size, or leave less than the reserve free.
type LimitError struct{ Msg string }

func (e *LimitError) Error() string { return e.Msg }

// fsSpace is what statfs says of a file system, in bytes and inodes.
type fsSpace struct {
	avail, total uint64 // bytes (avail: for unprivileged users, the stricter count)
	files, ffree uint64 // inodes; files is 0 when the file system has no fixed count
}

// freeSpace is statfs(2); tests replace it.
var freeSpace = func(dir string) (fsSpace, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fsSpace{}, err
	}
	bs := uint64(st.Bsize)
	return fsSpace{avail: st.Bavail * bs, total: st.Blocks * bs, files: st.Files, ffree: st.Ffree}, nil
}

// checkEvery is how much file data is written between free-space checks
// (every file is checked before it is written, against its size).
const checkEvery = 8 << 20

// limits bounds what one import writes.
type limits struct {
	dir       string // on the file system written to
	maxSize   int64  // file data bytes; 0: no limit
	reserve   int64  // bytes left free; 0: none
	written   int64
	unchecked int64
	entries   int
}

// newLimits resolves the reserve for the file system of dir and refuses
// at once when it is already short.
func newLimits(dir string, maxSize, reserve int64) (*limits, error) {
	l := &limits{dir: dir, maxSize: maxSize, reserve: reserve}
	if reserve < 0 {
		l.reserve = 0
		return l, nil
	}
	st, err := freeSpace(dir)
	if err != nil {
		return nil, fmt.Errorf("free space of %s: %w", dir, err)
	}
	if reserve == 0 {
		l.reserve = DefaultReserve(st.total)
	}
	return l, l.check(0)
}

// need is asked before a file of n bytes is written.
func (l *limits) need(n int64) error {
	if l.maxSize > 0 && l.written+n > l.maxSize {
		return &LimitError{fmt.Sprintf("the image is larger than --max-size %s (%s written so far, this file %s)",
			size(l.maxSize), size(l.written), size(n))}
	}
	return l.check(n)
}

// wrote counts n bytes written, checking free space now and then.
func (l *limits) wrote(n int64) error {
	l.written += n
	l.unchecked += n
	if l.unchecked < checkEvery {
		return nil
	}
	l.unchecked = 0
	return l.check(0)
}

// entry counts one entry of any type (inodes, directory blocks).
func (l *limits) entry() error {
	l.entries++
	if l.entries%1000 != 0 {
		return nil
	}
	return l.check(0)
}

// check refuses when writing n more bytes would leave less than the
// reserve free (or fewer than 1% of the inodes).
func (l *limits) check(n int64) error {
	if l.reserve <= 0 {
		return nil
	}
	st, err := freeSpace(l.dir)
	if err != nil {
		return fmt.Errorf("free space of %s: %w", l.dir, err)
	}
	if avail := int64(min(st.avail, 1<<62)); avail-n < l.reserve {
		what := ""
		if n > 0 {
			what = fmt.Sprintf(" after this %s file", size(n))
		}
		return &LimitError{fmt.Sprintf("the file system of %s would have less than the reserve of %s free%s (%s free now): "+
			"free space, or lower --reserve", l.dir, size(l.reserve), what, size(avail))}
	}
	if st.files > 0 && st.ffree < st.files/100 {
		return &LimitError{fmt.Sprintf("the file system of %s is short of inodes (%d of %d free)", l.dir, st.ffree, st.files)}
	}
	return nil
}

// size is n in the largest binary unit that keeps it at least 1.
func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
