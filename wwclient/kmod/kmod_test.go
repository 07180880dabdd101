package kmod

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// From the lab image (Debian 6.1 kernel, depmod output).
const labDep = `kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko
kernel/drivers/net/ethernet/intel/e1000/e1000.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
`

const labAlias = `# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias pci:v00008086d000010B5sv*sd*bc*sc*i* e1000
alias pci:v00008086d00001234sv*sd*bc*sc*i* builtin_nic
`

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func modDir(t *testing.T) string {
	d := t.TempDir()
	writeFile(t, filepath.Join(d, "modules.dep"), labDep)
	writeFile(t, filepath.Join(d, "modules.alias"), labAlias)
	return d
}

func pciDev(t *testing.T, sys, slot, class, modalias string) {
	writeFile(t, filepath.Join(sys, "bus/pci/devices", slot, "class"), class+"\n")
	writeFile(t, filepath.Join(sys, "bus/pci/devices", slot, "modalias"), modalias+"\n")
}

// fakeLoader records loads; loading virtio_pci makes the virtio net device
// appear, like the real bus driver does.
type fakeLoader struct {
	sys    string
	t      *testing.T
	loaded []string
	fail   map[string]error
}

func (f *fakeLoader) Load(p string) error {
	name := ModuleName(p)
	if err := f.fail[name]; err != nil {
		return err
	}
	if _, err := os.Stat(p); err != nil {
		f.t.Errorf("loader got a path that does not exist: %s", p)
	}
	f.loaded = append(f.loaded, name)
	if name == "virtio_pci" {
		writeFile(f.t, filepath.Join(f.sys, "bus/virtio/devices/virtio0/modalias"), "virtio:d00000001v00001AF4\n")
		writeFile(f.t, filepath.Join(f.sys, "bus/virtio/devices/virtio1/modalias"), "virtio:d00000002v00001AF4\n") // block: ignored
	}
	return nil
}

func touchModules(t *testing.T, dir string) {
	for _, line := range strings.Split(labDep, "\n") {
		if p, _, ok := strings.Cut(line, ":"); ok {
			writeFile(t, filepath.Join(dir, p), "\x7fELF")
		}
	}
}

func TestLoadNetworkDriversVirtio(t *testing.T) {
	sys := t.TempDir()
	mods := modDir(t)
	touchModules(t, mods)
	pciDev(t, sys, "0000:00:03.0", "0x020000", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00") // virtio-net-pci
	pciDev(t, sys, "0000:00:04.0", "0x010000", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00") // virtio-blk: not a NIC
	pciDev(t, sys, "0000:00:05.0", "0x020000", "pci:v00008086d0000100Esv00008086sd0000001Ebc02sc00i00") // e1000
	pciDev(t, sys, "0000:00:06.0", "0x020000", "pci:v00008086d00001234sv00008086sd00000000bc02sc00i00") // built in
	fl := &fakeLoader{sys: sys, t: t}
	loaded, err := LoadNetworkDrivers(context.Background(), Options{SysRoot: sys, ModulesDir: mods, Loader: fl})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		// round 1: virtio_pci with its dependencies first, then e1000
		"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "e1000",
		// round 2: the virtio net device appeared
		"failover", "net_failover", "virtio_net",
	}
	if !reflect.DeepEqual(fl.loaded, want) || !reflect.DeepEqual(loaded, want) {
		t.Fatalf("loaded %v\nreturned %v\nwant %v", fl.loaded, loaded, want)
	}
}

func TestLoadNetworkDriversFailureSkipped(t *testing.T) {
	sys := t.TempDir()
	mods := modDir(t)
	touchModules(t, mods)
	pciDev(t, sys, "0000:00:05.0", "0x020000", "pci:v00008086d000010B5sv00008086sd0000001Ebc02sc00i00")
	fl := &fakeLoader{sys: sys, t: t, fail: map[string]error{"e1000": errors.New("exec format error")}}
	loaded, err := LoadNetworkDrivers(context.Background(), Options{SysRoot: sys, ModulesDir: mods, Loader: fl})
	if err != nil || len(loaded) != 0 {
		t.Fatalf("loaded %v err %v", loaded, err)
	}
	// no index at all is an error
	if _, err := LoadNetworkDrivers(context.Background(), Options{SysRoot: sys, ModulesDir: t.TempDir(), Loader: fl}); err == nil {
		t.Fatal("want error without modules.dep")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := LoadNetworkDrivers(ctx, Options{SysRoot: sys, ModulesDir: mods, Loader: fl}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestIndex(t *testing.T) {
	d := modDir(t)
	touchModules(t, d)
	ix, err := LoadIndex(d)
	if err != nil {
		t.Fatal(err)
	}
	if got := ix.Match("pci:v00008086d000010B5sv00008086sd0000001Ebc02sc00i00"); !reflect.DeepEqual(got, []string{"e1000"}) {
		t.Fatalf("match %v", got)
	}
	if got := ix.Match("pci:v00008086d00001234sv0sd0bc02sc00i00"); len(got) != 0 {
		t.Fatalf("built-in module must not be returned: %v", got)
	}
	if got := ix.Match("usb:v1234"); len(got) != 0 {
		t.Fatalf("%v", got)
	}
	order, err := ix.LoadOrder("virtio-net") // dashes accepted
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range order {
		if !strings.HasPrefix(p, ix.dir) {
			t.Fatalf("not absolute under module dir: %s", p)
		}
		names = append(names, ModuleName(p))
	}
	// every module comes after its dependencies
	pos := map[string]int{}
	for i, n := range names {
		pos[n] = i
	}
	for _, pair := range [][2]string{{"failover", "net_failover"}, {"virtio_ring", "virtio"}, {"virtio", "virtio_net"}, {"net_failover", "virtio_net"}} {
		if pos[pair[0]] >= pos[pair[1]] {
			t.Errorf("%s must load before %s: %v", pair[0], pair[1], names)
		}
	}
	if names[len(names)-1] != "virtio_net" || len(names) != 5 {
		t.Fatalf("order %v", names)
	}
	if _, err := ix.LoadOrder("nope"); err == nil {
		t.Fatal("unknown module")
	}
}

func TestDependencyCycle(t *testing.T) {
	d := t.TempDir()
	writeFile(t, filepath.Join(d, "modules.dep"), "a.ko: b.ko\nb.ko: a.ko\n")
	writeFile(t, filepath.Join(d, "modules.alias"), "")
	ix, err := LoadIndex(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.LoadOrder("a"); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("cycle: %v", err)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/net/virtio_net.ko":      "virtio_net",
		"kernel/drivers/net/foo-bar.ko.xz":      "foo_bar",
		"/lib/modules/x/kernel/a/e1000e.ko.zst": "e1000e",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("%s: %s", in, got)
		}
	}
}

func TestFinitLoaderErrors(t *testing.T) {
	if err := (FinitLoader{}).Load(filepath.Join(t.TempDir(), "missing.ko")); err == nil {
		t.Fatal("missing file")
	}
	// not an ELF module: the kernel refuses it (or we lack the privilege)
	p := filepath.Join(t.TempDir(), "bogus.ko")
	writeFile(t, p, "not a module")
	if err := (FinitLoader{}).Load(p); err == nil {
		t.Fatal("bogus module loaded?")
	}
}

// TestIndexAbsentModules: a node with network_drivers gets the image's
// whole modules.dep and modules.alias but only some module files; a module
// whose file (or a dependency's) is not there is not matched or loaded.
func TestIndexAbsentModules(t *testing.T) {
	d := modDir(t)
	touchModules(t, d)
	for _, rm := range []string{"kernel/drivers/net/ethernet/intel/e1000/e1000.ko", "kernel/net/core/failover.ko"} {
		if err := os.Remove(filepath.Join(d, rm)); err != nil {
			t.Fatal(err)
		}
	}
	ix, err := LoadIndex(d)
	if err != nil {
		t.Fatal(err)
	}
	if got := ix.Match("pci:v00008086d000010B5sv00008086sd0000001Ebc02sc00i00"); len(got) != 0 {
		t.Fatalf("absent e1000 matched: %v", got)
	}
	if got := ix.Match("virtio:d00000001v00001AF4"); !reflect.DeepEqual(got, []string{"virtio_net"}) {
		t.Fatalf("virtio_net: %v", got)
	}
	if _, err := ix.LoadOrder("virtio_net"); err == nil || !strings.Contains(err.Error(), "failover.ko") {
		t.Fatalf("missing dependency: %v", err)
	}
	if order, err := ix.LoadOrder("virtio_pci"); err != nil || len(order) != 5 {
		t.Fatalf("virtio_pci: %v %v", order, err)
	}
}
