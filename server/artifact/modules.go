package artifact

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/cavaliergopher/cpio"

	"github.com/wwcluster/ww/server/config"
)

// ModulesName is the file name recorded as sent for the network driver
// modules of a two-stage boot.
const ModulesName = "__MODULES__.img.gz"

// KernelModules returns the network drivers of the node's kernel, taken
// from its image, as one gzip newc cpio: what wwclient needs in the first
// stage of a two-stage boot (no image yet) to bring the node's NIC up.
// It holds lib/modules/VERSION/ (through the image's own symlinks, e.g.
// lib -> usr/lib) with modules.dep, modules.alias, modules.builtin and
// modules.softdep copied as they are, every module under
// kernel/drivers/net/ (but wireless, WWAN, CAN, USB and other non-Ethernet
// link layers) and kernel/drivers/virtio/, and everything those depend on
// (modules.dep). A node with network_drivers gets kernel/drivers/virtio/
// and the listed modules instead of kernel/drivers/net/ (netdrivers.go).
// VERSION is the kernel's file name after "vmlinuz-". An image without
// that directory (drivers built in) gives an empty archive.
// The files are the image's own, so laying them over the image later
// changes nothing.
func (b *Builder) KernelModules(ctx context.Context, snap *config.Snapshot, n *config.Node) (*Artifact, error) {
	a, err := b.kernelModules(ctx, b.newFingerprints(), n)
	if err != nil {
		b.m.errors.WithLabelValues("modules").Inc()
	}
	return a, err
}

func (b *Builder) kernelModules(ctx context.Context, fps *fingerprints, n *config.Node) (*Artifact, error) {
	k, err := b.kernel(n)
	if err != nil {
		return nil, err
	}
	kver := strings.TrimPrefix(k.Name, "vmlinuz-")
	dir, err := b.rootfs(n)
	if err != nil {
		return nil, err
	}
	fp, err := fps.get(ctx, dir, treeImage)
	if err != nil {
		return nil, b.treeError("image", n.Image, "images/"+n.Image+"/rootfs", err)
	}
	drivers := config.NetworkDriverSet(n.NetworkDrivers)
	fields := []string{"ww-netmodules/1", strconv.Itoa(gzipLevel), kver, fp.hash}
	if len(drivers) > 0 { // the default's key stays what it was
		fields = append(fields, "drivers", strings.Join(drivers, ","))
	}
	p, err := b.get(ctx, kindModules, hashKey(fields...), func(w io.Writer) error {
		return writeModules(w, dir, kver, drivers)
	})
	if err != nil {
		return nil, driversError(n, kver, err)
	}
	return b.artifact(ModulesName, p), nil
}

// moduleDirs are the module trees whose modules stage 1 gets.
var moduleDirs = []string{"kernel/drivers/net/", virtioModuleDir}

// virtioModuleDir holds the virtio bus drivers (virtio_pci, …), which a
// node with network_drivers gets too: small, and a virtio NIC needs them.
const virtioModuleDir = "kernel/drivers/virtio/"

// skippedNetDirs are link layers under kernel/drivers/net/ no node boots
// over.
var skippedNetDirs = []string{"wireless/", "wwan/", "can/", "ieee802154/", "hamradio/", "usb/", "ppp/",
	"slip/", "plip/", "arcnet/", "fddi/", "wan/"}

// moduleMeta are the index files copied as they are.
var moduleMeta = []string{"modules.alias", "modules.builtin", "modules.dep", "modules.softdep"}

func wantModule(m string) bool {
	for _, d := range moduleDirs {
		rest, ok := strings.CutPrefix(m, d)
		if !ok {
			continue
		}
		if d == moduleDirs[0] {
			for _, s := range skippedNetDirs {
				if strings.HasPrefix(rest, s) {
					return false
				}
			}
		}
		return true
	}
	return false
}

// maxModuleDepLine bounds a modules.dep line (a module and its dependencies).
const maxModuleDepLine = 1 << 20

// writeModules writes the archive KernelModules describes; drivers are
// network_drivers as config.NetworkDriverSet gives them (none: every
// network driver).
func writeModules(w io.Writer, dir, kver string, drivers []string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	cw := newArchive(w)
	m := &modWriter{root: root, cw: cw, done: map[string]bool{}}
	modDir, want, err := m.index(kver, drivers)
	if errors.Is(err, errNoModules) {
		return cw.Close() // drivers built in, or no modules at all
	}
	if err != nil {
		return err
	}
	for _, f := range moduleMeta {
		if err := m.file(modDir + "/" + f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	mods := make([]string, 0, len(want))
	for mod := range want {
		mods = append(mods, mod)
	}
	sort.Strings(mods)
	for _, mod := range mods {
		if mod == "" || strings.HasPrefix(mod, "/") || strings.Contains("/"+mod+"/", "/../") {
			continue // not a path below the module directory
		}
		if err := m.dirs(modDir, path.Dir(mod)); err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
				continue
			}
			return err
		}
		if err := m.file(modDir + "/" + mod); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return cw.Close()
}

// errNoModules: the image has no modules for the kernel (and no
// network_drivers asks for any).
var errNoModules = errors.New("no modules")

// index writes the module directory's path (through the image's symlinks)
// and returns it, with the modules.dep paths the archive holds.
func (m *modWriter) index(kver string, drivers []string) (string, map[string]bool, error) {
	if kver == "" || strings.Contains(kver, "/") || kver == "." || kver == ".." {
		return "", nil, notFound("kernel version %q: no lib/modules directory for it", kver)
	}
	modDir, err := m.resolve("lib/modules/" + kver)
	if errors.Is(err, fs.ErrNotExist) {
		if len(drivers) > 0 {
			return "", nil, &missingDriversError{modules: drivers, why: "the image has no lib/modules/" + kver}
		}
		return "", nil, errNoModules
	}
	if err != nil {
		return "", nil, fmt.Errorf("lib/modules/%s: %w", kver, err)
	}
	deps, err := readModulesDep(m.root, modDir+"/modules.dep")
	if errors.Is(err, fs.ErrNotExist) {
		if len(drivers) > 0 {
			return "", nil, &missingDriversError{modules: drivers, why: "the image has no lib/modules/" + kver + "/modules.dep"}
		}
		return "", nil, errNoModules
	}
	if err != nil {
		return "", nil, err
	}
	want, err := pickModules(m.root, modDir, deps, drivers)
	return modDir, want, err
}

// checkModules looks drivers up as writeModules does, writing nothing.
func checkModules(dir, kver string, drivers []string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	m := &modWriter{root: root, cw: newArchive(io.Discard), done: map[string]bool{}}
	_, _, err = m.index(kver, drivers)
	if errors.Is(err, errNoModules) {
		return nil
	}
	return err
}

// pickModules returns the modules.dep paths the archive holds: the
// network drivers (or the listed drivers and kernel/drivers/virtio/) and
// everything they depend on.
func pickModules(root *os.Root, modDir string, deps map[string][]string, drivers []string) (map[string]bool, error) {
	want := map[string]bool{}
	var add func(mod string)
	add = func(mod string) {
		if want[mod] {
			return
		}
		want[mod] = true
		for _, d := range deps[mod] {
			add(d)
		}
	}
	if len(drivers) == 0 {
		for mod := range deps {
			if wantModule(mod) {
				add(mod)
			}
		}
		return want, nil
	}
	listed, err := listedModules(root, modDir, deps, drivers)
	if err != nil {
		return nil, err
	}
	for mod := range deps {
		if strings.HasPrefix(mod, virtioModuleDir) { // the bus drivers
			add(mod)
		}
	}
	for _, mod := range listed {
		add(mod)
	}
	return want, nil
}

// readModulesDep parses modules.dep: "kernel/a.ko: kernel/b.ko kernel/c.ko".
func readModulesDep(root *os.Root, name string) (map[string][]string, error) {
	f, err := openRead(root, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deps := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxModuleDepLine)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[strings.TrimSpace(mod)] = strings.Fields(rest)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return deps, nil
}

var errNotDir = errors.New("not a directory")

// modWriter writes entries of the image tree, each path once, parents
// first.
type modWriter struct {
	root *os.Root
	cw   *cpio.Writer
	done map[string]bool
}

// entry writes the entry at rel (a directory, symlink or regular file).
func (m *modWriter) entry(rel string) (fs.FileInfo, error) {
	fi, err := m.root.Lstat(rel)
	if err != nil {
		return nil, err
	}
	if m.done[rel] {
		return fi, nil
	}
	e := newEntry(rel, fi)
	if fi.Mode()&fs.ModeSymlink != 0 {
		if e.link, err = m.root.Readlink(rel); err != nil {
			return nil, err
		}
	}
	if err := writeEntry(m.cw, &e, rel, func() (*os.File, error) { return openRead(m.root, rel) }); err != nil {
		return nil, err
	}
	m.done[rel] = true
	return fi, nil
}

// resolve writes every component of rel (directories, and symlinks with
// what they point to, inside the tree) and returns the real path.
func (m *modWriter) resolve(rel string) (string, error) {
	parts := strings.Split(rel, "/")
	cur := ""
	for hops := 0; len(parts) > 0; {
		next := path.Join(cur, parts[0])
		parts = parts[1:]
		fi, err := m.entry(next)
		if err != nil {
			return "", err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if hops++; hops > 16 {
				return "", errors.New("too many levels of symlinks")
			}
			target, err := m.root.Readlink(next)
			if err != nil {
				return "", err
			}
			if !path.IsAbs(target) {
				target = path.Join("/", cur, target) // ".." stops at the root, as in a chroot
			}
			t := path.Clean(target)[1:]
			parts = append(strings.Split(t, "/"), parts...)
			if t == "" {
				parts = parts[1:]
			}
			cur = ""
		case fi.IsDir():
			cur = next
		default:
			return "", fmt.Errorf("%s: %w", next, errNotDir)
		}
	}
	return cur, nil
}

// dirs writes the directories of rel below base (already written); a
// component that is not a directory is errNotDir.
func (m *modWriter) dirs(base, rel string) error {
	cur := base
	for _, p := range strings.Split(rel, "/") {
		if p == "." || p == "" {
			continue
		}
		cur += "/" + p
		fi, err := m.entry(cur)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s: %w", cur, errNotDir)
		}
	}
	return nil
}

// file writes a regular file (anything else is left out).
func (m *modWriter) file(rel string) error {
	fi, err := m.root.Lstat(rel)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	_, err = m.entry(rel)
	return err
}
