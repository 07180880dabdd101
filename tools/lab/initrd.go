package lab

import (
	"bufio"
	"compress/gzip"
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
