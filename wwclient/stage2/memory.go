package stage2

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
)

// ErrTooBig is returned (wrapped) when the image will not fit in memory.
var ErrTooBig = errors.New("image does not fit in memory")

// MemAvailable parses /proc/meminfo content and returns MemAvailable in
// bytes.
func MemAvailable(meminfo []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "MemAvailable" {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			break
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("meminfo: MemAvailable %q", v)
		}
		if len(f) > 1 && f[1] != "kB" {
			return 0, fmt.Errorf("meminfo: MemAvailable in %q, want kB", f[1])
		}
		return n << 10, nil
	}
	return 0, errors.New("meminfo: no MemAvailable line")
}

// Overheads counted on top of the image's own size.
const (
	// reserveBytes is left for the kernel, wwclient and the image's init.
	reserveBytes = 128 << 20
)

// fetchBuffers is what a fetch of ix with parallel workers holds at most:
// 2×parallel fetched-ahead compressed chunks and one uncompressed chunk.
func fetchBuffers(ix *chunkimage.Index, parallel int) int64 {
	var maxC, maxU int64
	for _, c := range ix.Chunks {
		maxC, maxU = max(maxC, c.Size), max(maxU, c.USize)
	}
	return int64(2*parallel)*maxC + maxU
}

// CheckFits says whether image ix can be unpacked into a tmpfs with fsFree
// bytes free (negative: unknown) on a node with memAvail bytes of
// available memory, fetching with parallel workers. The tmpfs holds the
// files rounded up to pages plus their inodes (size/32 is counted for
// that); memory must also hold the fetch buffers and a reserve for the
// system.
func CheckFits(ix *chunkimage.Index, memAvail, fsFree int64, parallel int) error {
	onDisk := ix.Size + ix.Size/32
	bufs := fetchBuffers(ix, parallel)
	need := onDisk + bufs + reserveBytes
	if need > memAvail {
		return fmt.Errorf("%w: the image needs %s (%s unpacked, plus %s to fetch it and %s for the system), %s of memory is available",
			ErrTooBig, gib(need), gib(onDisk), gib(bufs), gib(reserveBytes), gib(memAvail))
	}
	if fsFree >= 0 && onDisk > fsFree {
		return fmt.Errorf("%w: the image needs %s unpacked, the tmpfs root has %s free (a tmpfs takes at most half the memory by default; kernel_args = [\"wwtmpfs_size=90%%\"] raises that)",
			ErrTooBig, gib(onDisk), gib(fsFree))
	}
	return nil
}

func gib(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	default:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
}
