package lab

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// CheckInit is a minimal /init for booting the image directly (no wwclient):
// it does what the bootstrap does for /sbin/init's sake and sets the hostname.
func CheckInit(hostname string) []byte {
	return []byte(`#!/bin/sh
# lab direct-boot check only; the real /init is the wwclient bootstrap
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
hostname ` + hostname + `
exec /sbin/init
`)
}

// WriteInitrd writes a gzip-compressed newc cpio of rootfs (without boot/,
// owned by root) followed by extra files (path -> content, mode 0755) to
// path. It is for direct-boot checks of an image; wwserver builds the real
// images.
func WriteInitrd(path, rootfs string, extra map[string][]byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	zw := gzip.NewWriter(bw)
	cw := &newcWriter{w: zw, ino: 1}
	err = filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(rootfs, p)
		if err != nil || rel == "." {
			return err
		}
		if rel == "boot" {
			return fs.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.Mode().IsDir():
			return cw.add(rel, 0o040000|uint32(info.Mode().Perm())|sticky(info), nil)
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return cw.add(rel, 0o120777, []byte(t))
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return cw.add(rel, 0o100000|uint32(info.Mode().Perm()), data)
		default:
			return nil // device nodes etc.: none in the image
		}
	})
	if err == nil {
		names := make([]string, 0, len(extra))
		for n := range extra {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if err = cw.add(strings.TrimPrefix(n, "/"), 0o100755, extra[n]); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = cw.add("TRAILER!!!", 0, nil)
	}
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func sticky(info fs.FileInfo) uint32 {
	if info.Mode()&fs.ModeSticky != 0 {
		return 0o1000
	}
	return 0
}

type newcWriter struct {
	w   io.Writer
	ino uint32
	n   int64
}

func (c *newcWriter) add(name string, mode uint32, data []byte) error {
	nlink := uint32(1)
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	ino := c.ino
	c.ino++
	if name == "TRAILER!!!" {
		ino, nlink = 0, 1
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	if err := c.write([]byte(hdr + name + "\x00")); err != nil {
		return err
	}
	if err := c.pad(); err != nil {
		return err
	}
	if err := c.write(data); err != nil {
		return err
	}
	return c.pad()
}

func (c *newcWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return err
}

func (c *newcWriter) pad() error {
	if r := c.n % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

// ReadNewc reads a (possibly gzip-compressed) newc cpio stream and returns
// its regular files by path (without a leading "/" or "./"). Concatenated
// archives (and gzip members) are read one after the other.
func ReadNewc(r io.Reader) (map[string][]byte, error) {
	br := bufio.NewReader(r)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	files := map[string][]byte{}
	var off int64
	skip := func(n int64) error {
		_, err := io.CopyN(io.Discard, br, n)
		off += n
		return err
	}
	for {
		// Padding between concatenated archives is NUL bytes.
		for {
			b, err := br.Peek(1)
			if err == io.EOF {
				return files, nil
			}
			if err != nil {
				return nil, err
			}
			if b[0] != 0 {
				break
			}
			if err := skip(1); err != nil {
				return nil, err
			}
		}
		hdr := make([]byte, 110)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return nil, fmt.Errorf("cpio header: %w", err)
		}
		off += 110
		if string(hdr[:6]) != "070701" && string(hdr[:6]) != "070702" {
			return nil, fmt.Errorf("cpio: bad magic %q at %d", hdr[:6], off-110)
		}
		field := func(i int) (int64, error) {
			var v int64
			_, err := fmt.Sscanf(string(hdr[6+8*i:14+8*i]), "%08x", &v)
			return v, err
		}
		mode, err1 := field(1)
		size, err2 := field(6)
		nameLen, err3 := field(11)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("cpio header: %w", err)
		}
		name := make([]byte, nameLen)
		if _, err := io.ReadFull(br, name); err != nil {
			return nil, err
		}
		off += nameLen
		if err := skip((4 - off%4) % 4); err != nil {
			return nil, err
		}
		n := strings.TrimRight(string(name), "\x00")
		data := make([]byte, size)
		if _, err := io.ReadFull(br, data); err != nil {
			return nil, err
		}
		off += size
		if err := skip((4 - off%4) % 4); err != nil {
			return nil, err
		}
		if n == "TRAILER!!!" {
			continue
		}
		if mode&0o170000 == 0o100000 {
			files[strings.TrimPrefix(strings.TrimPrefix(n, "./"), "/")] = data
		}
	}
}
