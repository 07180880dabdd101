package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ImagesDirMode is the mode of images/: image trees hold setuid-root
// programs and device nodes, which any local user could run or open from
// the host if the path to them were open. Only root (the server, the CLI)
// goes in.
const ImagesDirMode fs.FileMode = 0o700

// SecureImagesDir creates tree/images with ImagesDirMode, or takes group
// and other access away from an existing one. It returns the mode it had
// when it changed it.
func SecureImagesDir(tree string) (fs.FileMode, bool, error) {
	dir := filepath.Join(tree, "images")
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(tree, 0o755); err != nil {
			return 0, false, err
		}
		if err := os.Mkdir(dir, ImagesDirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return 0, false, err
		}
		return 0, false, os.Chmod(dir, ImagesDirMode) // whatever the umask
	}
	if err != nil {
		return 0, false, err
	}
	if !fi.IsDir() {
		return 0, false, fmt.Errorf("%s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return 0, false, nil
	}
	if err := os.Chmod(dir, fi.Mode().Perm()&ImagesDirMode); err != nil {
		return 0, false, fmt.Errorf("make %s root-only: %w", dir, err)
	}
	return fi.Mode().Perm(), true, nil
}

// ImagesExposure says why a user other than root can reach tree/images
// ("" when none can): no directory on the path to it (images/ itself or
// a parent) is owned by root and shut to group and others.
func ImagesExposure(tree string) (string, error) {
	dir, err := filepath.Abs(filepath.Join(tree, "images"))
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	first := fi
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return "", err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 && fi.Mode().Perm()&0o011 == 0 {
			return "", nil
		}
		if d == "/" || d == filepath.Dir(d) {
			break
		}
	}
	why := fmt.Sprintf("mode %04o", first.Mode().Perm())
	if st, ok := first.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		why += fmt.Sprintf(", owned by uid %d", st.Uid)
	}
	return fmt.Sprintf("%s (%s) and no parent directory is root-only: any local user can reach the image trees "+
		"and run their setuid-root programs; chown root %s && chmod 0700 %s (serve and image import do the chmod)",
		dir, why, dir, dir), nil
}
