package image

import (
	"io/fs"
	"syscall"
)

type devIno struct{ dev, ino uint64 }

func statT(fi fs.FileInfo) (devIno, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return devIno{}, false
	}
	return devIno{uint64(st.Dev), st.Ino}, true
}
