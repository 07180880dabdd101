// Package kmod loads the kernel modules for the node's network devices
// without modprobe: it reads the modalias of PCI network devices (class
// 0x02) and virtio network devices from sysfs, matches them against
// modules.alias (glob patterns), resolves dependencies from modules.dep and
// loads each module with finit_module(2).
//
// Not handled: modprobe.d (options, blacklists, softdeps, install
// commands); .ko.xz/.ko.zst modules need a kernel that decompresses
// in-kernel (CONFIG_MODULE_DECOMPRESS); .ko.gz falls back to Go's gzip.
package kmod

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Loader loads one module file.
type Loader interface {
	Load(path string) error
}

// FinitLoader loads modules with finit_module(2); an already loaded module
// (EEXIST) is not an error.
type FinitLoader struct{}

// Load implements Loader.
func (FinitLoader) Load(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if isCompressed(p) {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if err == nil || errors.Is(err, unix.EEXIST) {
		return nil
	}
	if strings.HasSuffix(p, ".gz") && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS)) {
		if _, serr := f.Seek(0, io.SeekStart); serr != nil {
			return fmt.Errorf("finit_module: %w", err)
		}
		zr, zerr := gzip.NewReader(f)
		if zerr != nil {
			return fmt.Errorf("gunzip: %w", zerr)
		}
		img, zerr := io.ReadAll(io.LimitReader(zr, 256<<20))
		if zerr != nil {
			return fmt.Errorf("gunzip: %w", zerr)
		}
		err = unix.InitModule(img, "")
		if err == nil || errors.Is(err, unix.EEXIST) {
			return nil
		}
		return fmt.Errorf("init_module: %w", err)
	}
	return fmt.Errorf("finit_module: %w", err)
}

func isCompressed(p string) bool {
	return strings.HasSuffix(p, ".xz") || strings.HasSuffix(p, ".zst") || strings.HasSuffix(p, ".gz")
}

// ModuleName is the canonical module name of a module path
// ("kernel/drivers/net/virtio_net.ko.xz" -> "virtio_net").
func ModuleName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

type alias struct{ pattern, module string }

// Index is modules.alias and modules.dep of one kernel.
type Index struct {
	dir     string
	aliases []alias
	paths   map[string]string   // module name -> path relative to dir
	deps    map[string][]string // path -> dependency paths
}

// LoadIndex reads modules.alias and modules.dep from a module directory
// (/lib/modules/RELEASE).
func LoadIndex(dir string) (*Index, error) {
	ix := &Index{dir: dir, paths: map[string]string{}, deps: map[string][]string{}}
	if err := eachLine(filepath.Join(dir, "modules.dep"), func(line string) {
		target, rest, ok := strings.Cut(line, ":")
		if !ok {
			return
		}
		target = strings.TrimSpace(target)
		ix.paths[ModuleName(target)] = target
		ix.deps[target] = strings.Fields(rest)
	}); err != nil {
		return nil, err
	}
	if err := eachLine(filepath.Join(dir, "modules.alias"), func(line string) {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "alias" {
			ix.aliases = append(ix.aliases, alias{pattern: f[1], module: strings.ReplaceAll(f[2], "-", "_")})
		}
	}); err != nil {
		return nil, err
	}
	return ix, nil
}

func eachLine(p string, fn func(string)) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fn(line)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	return nil
}

// Match returns the module names whose alias pattern matches modalias, in
// modules.alias order, without duplicates. Modules that are not in
// modules.dep (built in) are left out, and so are those whose file is not
// there: a node with network_drivers gets only those modules, with the
// image's whole modules.dep and modules.alias.
func (ix *Index) Match(modalias string) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range ix.aliases {
		if seen[a.module] {
			continue
		}
		if ok, err := path.Match(a.pattern, modalias); err == nil && ok {
			seen[a.module] = true
			if p, known := ix.paths[a.module]; known && ix.present(p) {
				out = append(out, a.module)
			}
		}
	}
	return out
}

// LoadOrder returns the module files (absolute paths) to load for module,
// dependencies first.
func (ix *Index) LoadOrder(module string) ([]string, error) {
	p, ok := ix.paths[strings.ReplaceAll(module, "-", "_")]
	if !ok {
		return nil, fmt.Errorf("module %s not in modules.dep", module)
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(p string, depth int) error
	visit = func(p string, depth int) error {
		switch state[p] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("dependency cycle at %s", p)
		}
		if depth > 64 {
			return fmt.Errorf("dependency chain too deep at %s", p)
		}
		state[p] = 1
		for _, d := range ix.deps[p] {
			if err := visit(d, depth+1); err != nil {
				return err
			}
		}
		state[p] = 2
		order = append(order, p)
		return nil
	}
	if err := visit(p, 0); err != nil {
		return nil, err
	}
	for i, rel := range order {
		if !ix.present(rel) {
			return nil, fmt.Errorf("module %s needs %s, which is not here", module, rel)
		}
		order[i] = ix.abs(rel)
	}
	return order, nil
}

func (ix *Index) abs(rel string) string {
	if filepath.IsAbs(rel) {
		return rel
	}
	return filepath.Join(ix.dir, rel)
}

// present reports whether the module file at rel (a modules.dep path) exists.
func (ix *Index) present(rel string) bool {
	_, err := os.Stat(ix.abs(rel))
	return err == nil
}

// NetworkModaliases returns the modalias of every PCI network-class
// device and every virtio network device under sysRoot (/sys).
func NetworkModaliases(sysRoot string) ([]string, error) {
	var out []string
	pci, err := filepath.Glob(filepath.Join(sysRoot, "bus/pci/devices/*"))
	if err != nil {
		return nil, err
	}
	for _, dev := range pci {
		class, err := os.ReadFile(filepath.Join(dev, "class"))
		if err != nil || !bytes.HasPrefix(bytes.TrimSpace(class), []byte("0x02")) {
			continue
		}
		if ma, err := os.ReadFile(filepath.Join(dev, "modalias")); err == nil {
			out = append(out, strings.TrimSpace(string(ma)))
		}
	}
	virtio, err := filepath.Glob(filepath.Join(sysRoot, "bus/virtio/devices/*/modalias"))
	if err != nil {
		return nil, err
	}
	for _, f := range virtio {
		ma, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(ma))
		if strings.HasPrefix(s, "virtio:d00000001v") { // VIRTIO_ID_NET
			out = append(out, s)
		}
	}
	return out, nil
}

// Options for LoadNetworkDrivers.
type Options struct {
	SysRoot    string // default /sys
	ModulesDir string // default /lib/modules/$(uname -r)
	Loader     Loader // default FinitLoader
	Logger     *slog.Logger
}

// LoadNetworkDrivers loads the modules for the network devices present.
// It repeats (up to 3 rounds) while new modules get loaded, since a bus
// driver (virtio_pci) creates the devices the NIC driver (virtio_net)
// binds to. It returns the names of the modules it loaded; a failing module
// is logged and skipped, the error reports only fatal problems (no index).
func LoadNetworkDrivers(ctx context.Context, o Options) ([]string, error) {
	if o.SysRoot == "" {
		o.SysRoot = "/sys"
	}
	if o.ModulesDir == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return nil, fmt.Errorf("uname: %w", err)
		}
		o.ModulesDir = filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	}
	if o.Loader == nil {
		o.Loader = FinitLoader{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ix, err := LoadIndex(o.ModulesDir)
	if err != nil {
		return nil, fmt.Errorf("module index: %w", err)
	}
	var loaded []string
	tried := map[string]bool{} // module files attempted
	for round := 0; round < 3; round++ {
		if err := ctx.Err(); err != nil {
			return loaded, err
		}
		aliases, err := NetworkModaliases(o.SysRoot)
		if err != nil {
			return loaded, fmt.Errorf("scan devices: %w", err)
		}
		progress := false
		for _, ma := range aliases {
			for _, mod := range ix.Match(ma) {
				files, err := ix.LoadOrder(mod)
				if err != nil {
					o.Logger.Warn("kernel module", "module", mod, "err", err)
					continue
				}
				for _, f := range files {
					if tried[f] {
						continue
					}
					tried[f] = true
					if err := o.Loader.Load(f); err != nil {
						o.Logger.Warn("load kernel module failed", "module", ModuleName(f), "err", err)
						continue
					}
					progress = true
					loaded = append(loaded, ModuleName(f))
				}
			}
		}
		if !progress {
			break
		}
	}
	if len(loaded) > 0 {
		o.Logger.Info("loaded kernel modules", "modules", strings.Join(loaded, " "))
	}
	return loaded, nil
}
