// Package overlays holds the overlay source trees that `wwserver init`
// writes into a new served tree: wwinit (the system overlay: /init, the
// wwclient configuration, hostname, hosts, network and the systemd unit)
// and generic (the runtime overlay: hosts of all nodes, passwd, group,
// root's authorized_keys). Files ending in .ww are Go text/template,
// rendered per node by wwserver (see DESIGN.md for the data).
//
// The embed directive keeps neither symlinks nor modes, so they are listed in
// Symlinks and Modes; Write applies both.
package overlays

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// FS holds the overlay trees, rooted at "wwinit" and "generic".
//
//go:embed all:wwinit all:generic
var FS embed.FS

// ClientBinary is where the wwclient binary belongs in the wwinit
// overlay; it is not in git: `wwserver init --wwclient PATH` copies it
// there (mode 0755). /init points to it.
const ClientBinary = "usr/sbin/wwclient"

// Symlinks are the links of the overlay trees: path in FS -> link target.
var Symlinks = map[string]string{
	"wwinit/init": ClientBinary,
	"wwinit/etc/systemd/system/multi-user.target.wants/wwclient.service": "/etc/systemd/system/wwclient.service",
}

// Modes are the permission bits of the entries that are not 0644 (files)
// or 0755 (directories). Keys are paths in FS.
var Modes = map[string]fs.FileMode{
	"wwinit/etc/wwclient/wwclient.toml.ww": 0o600, // holds the asset key
	// NetworkManager ignores keyfiles others can read
	"wwinit/etc/NetworkManager/system-connections/ww.nmconnection.ww": 0o600,
	"generic/etc/shadow.ww":                0o600,
	"generic/etc/gshadow.ww":               0o600,
	"generic/root":                         0o700,
	"generic/root/.ssh":                    0o700,
	"generic/root/.ssh/authorized_keys.ww": 0o600,
	"generic/etc/ssh/ww-host-keys.ww":      0o600, // private host keys
	// only present when a build copied the binary into the source tree
	// (it is git-ignored); embedded files lose their x bit
	"wwinit/" + ClientBinary: 0o755,
}

// Names lists the overlays in FS.
func Names() []string { return []string{"wwinit", "generic"} }

// Mode returns the permission bits for p (a path in FS) of the given kind.
func Mode(p string, dir bool) fs.FileMode {
	if m, ok := Modes[p]; ok {
		return m
	}
	if dir {
		return 0o755
	}
	return 0o644
}

// Write writes overlay name (one of Names) into the directory dst (created
// if needed; dst becomes the overlay's root, e.g. TREE/overlays/wwinit),
// with the modes of Modes and the symlinks of Symlinks. Existing files are
// overwritten. The wwclient binary is not included (see ClientBinary).
func Write(dst, name string) error {
	if _, err := fs.Stat(FS, name); err != nil {
		return fmt.Errorf("overlay %q: %w", name, err)
	}
	err := fs.WalkDir(FS, name, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, name), "/")
		target := filepath.Join(dst, filepath.FromSlash(rel))
		if d.IsDir() {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			return os.Chmod(target, Mode(p, true))
		}
		data, err := FS.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(target, data, 0o600); err != nil {
			return err
		}
		return os.Chmod(target, Mode(p, false))
	})
	if err != nil {
		return fmt.Errorf("write overlay %s: %w", name, err)
	}
	links := make([]string, 0, len(Symlinks))
	for p := range Symlinks {
		if strings.HasPrefix(p, name+"/") {
			links = append(links, p)
		}
	}
	sort.Strings(links)
	for _, p := range links {
		target := filepath.Join(dst, filepath.FromSlash(strings.TrimPrefix(p, name+"/")))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("write overlay %s: %w", name, err)
		}
		if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write overlay %s: %w", name, err)
		}
		if err := os.Symlink(Symlinks[p], target); err != nil {
			return fmt.Errorf("write overlay %s: %w", name, err)
		}
	}
	return nil
}

// WriteAll writes every overlay into dir/NAME.
func WriteAll(dir string) error {
	for _, n := range Names() {
		if err := Write(filepath.Join(dir, n), n); err != nil {
			return err
		}
	}
	return nil
}
