package artifact

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/wwcluster/ww/server/config"
)

// missingDriversError: network_drivers names modules the image's kernel
// does not have. The node would boot without a network, so its modules
// archive is not built.
type missingDriversError struct {
	modules []string
	why     string // "" or why none could be looked up
}

func (e *missingDriversError) Error() string {
	what := "not in modules.dep or modules.builtin"
	if e.why != "" {
		what = e.why
	}
	return fmt.Sprintf("network_drivers: no module %s (%s)", strings.Join(e.modules, ", "), what)
}

func (e *missingDriversError) Is(target error) bool { return target == ErrNotFound }

// driversError names the node, image and kernel version in a build error
// about its network_drivers (the build is shared by the nodes with the
// same list: the error names the one asking).
func driversError(n *config.Node, kver string, err error) error {
	if me := (*missingDriversError)(nil); errors.As(err, &me) {
		return &kindError{kind: ErrNotFound, msg: fmt.Sprintf("node %q: image %q, kernel %s", n.Name, n.Image, kver), err: me}
	}
	return fmt.Errorf("image %q: network modules of %s: %w", n.Image, kver, err)
}

// moduleName is a module path's name as modprobe takes it
// ("kernel/drivers/net/virtio_net.ko.xz" -> "virtio_net").
func moduleName(p string) string {
	b, _, _ := strings.Cut(path.Base(p), ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

// listedModules returns the modules.dep paths of drivers (canonical
// names); a driver built into the kernel (modules.builtin) has none. A
// driver that is neither is a *missingDriversError.
func listedModules(root *os.Root, modDir string, deps map[string][]string, drivers []string) ([]string, error) {
	byName := make(map[string]string, len(deps))
	for mod := range deps {
		byName[moduleName(mod)] = mod
	}
	var paths, missing []string
	for _, d := range drivers {
		if p, ok := byName[d]; ok {
			paths = append(paths, p)
		} else {
			missing = append(missing, d)
		}
	}
	if len(missing) == 0 {
		return paths, nil
	}
	builtin, err := readBuiltin(root, modDir+"/modules.builtin")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	notBuiltin := missing[:0]
	for _, d := range missing {
		if _, ok := builtin[d]; !ok {
			notBuiltin = append(notBuiltin, d)
		}
	}
	if len(notBuiltin) > 0 {
		return nil, &missingDriversError{modules: notBuiltin}
	}
	return paths, nil
}

// readBuiltin reads modules.builtin (one module path a line) as a set of
// module names.
func readBuiltin(root *os.Root, name string) (map[string]struct{}, error) {
	f, err := openRead(root, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]struct{}{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxModuleDepLine)
	for sc.Scan() {
		if p := strings.TrimSpace(sc.Text()); p != "" {
			names[moduleName(p)] = struct{}{}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return names, nil
}

// MissingNetworkDrivers returns the modules of the node's network_drivers
// that its image's kernel (version kver) has neither as a module nor built
// in, without building anything (wwserver check). A node without a list,
// or whose image or kernel cannot be found (other checks say so), has
// none; err is a problem reading the image's module index.
func (b *Builder) MissingNetworkDrivers(n *config.Node) (kver string, missing []string, err error) {
	drivers := config.NetworkDriverSet(n.NetworkDrivers)
	if len(drivers) == 0 {
		return "", nil, nil
	}
	k, err := b.kernel(n)
	if err != nil {
		return "", nil, nil
	}
	kver = strings.TrimPrefix(k.Name, "vmlinuz-")
	dir, err := b.rootfs(n)
	if err != nil {
		return kver, nil, nil
	}
	err = checkModules(dir, kver, drivers)
	if me := (*missingDriversError)(nil); errors.As(err, &me) {
		return kver, me.modules, nil
	}
	return kver, nil, err
}
