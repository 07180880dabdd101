package artifact

import (
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

const driversKver = "6.1.0-28-amd64"

// driversTree is an image whose kernel has a few NIC drivers with shared
// dependencies (ptp), the virtio bus drivers and an unrelated module.
func driversTree(t *testing.T) (*testTree, string) {
	tt := newTree(t)
	tt.standard()
	md := "images/debian/rootfs/lib/modules/" + driversKver + "/"
	deps := [][2]string{
		{"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko"},
		{"kernel/drivers/virtio/virtio_ring.ko", ""},
		{"kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko"},
		{"kernel/drivers/virtio/virtio_balloon.ko", "kernel/drivers/virtio/virtio.ko"},
		{"kernel/drivers/net/virtio_net.ko", "kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko"},
		{"kernel/drivers/net/net_failover.ko", "kernel/net/core/failover.ko"},
		{"kernel/net/core/failover.ko", ""},
		{"kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko", "kernel/drivers/ptp/ptp.ko kernel/drivers/pps/pps_core.ko"},
		{"kernel/drivers/net/ethernet/intel/igb/igb.ko", "kernel/drivers/ptp/ptp.ko kernel/drivers/pps/pps_core.ko kernel/drivers/i2c/algos/i2c-algo-bit.ko"},
		{"kernel/drivers/net/ethernet/mellanox/mlx4/mlx4_en.ko", "kernel/drivers/net/ethernet/mellanox/mlx4/mlx4_core.ko"},
		{"kernel/drivers/net/ethernet/mellanox/mlx4/mlx4_core.ko", ""},
		{"kernel/drivers/ptp/ptp.ko", "kernel/drivers/pps/pps_core.ko"},
		{"kernel/drivers/pps/pps_core.ko", ""},
		{"kernel/drivers/i2c/algos/i2c-algo-bit.ko", ""},
		{"kernel/fs/xfs/xfs.ko", ""},
	}
	var dep strings.Builder
	for _, d := range deps {
		dep.WriteString(d[0] + ": " + d[1] + "\n")
		tt.file(md+d[0], "module "+d[0], 0o644)
	}
	tt.file(md+"modules.dep", dep.String(), 0o644)
	tt.file(md+"modules.alias", "alias virtio:d00000001v* virtio_net\n", 0o644)
	tt.file(md+"modules.builtin", "kernel/drivers/net/ethernet/intel/e100.ko\n", 0o644)
	return tt, dep.String()
}

// moduleFiles are the .ko files of a modules archive, as modules.dep
// paths, sorted.
func moduleFiles(files map[string]archFile) []string {
	var out []string
	for name := range files {
		if rest, ok := strings.CutPrefix(name, "lib/modules/"+driversKver+"/"); ok && strings.HasSuffix(rest, ".ko") {
			out = append(out, rest)
		}
	}
	sort.Strings(out)
	return out
}

func withDrivers(n *config.Node, drivers ...string) *config.Node {
	c := *n
	c.NetworkDrivers = drivers
	return &c
}

// TestKernelModulesNetworkDrivers: a node with network_drivers gets the
// virtio bus drivers and exactly the listed modules with their
// dependencies; modules.dep and the other index files are the image's own
// (laid over the image later, they must change nothing there: wwclient's
// kmod skips the modules whose file is not in the initramfs).
func TestKernelModulesNetworkDrivers(t *testing.T) {
	tt, dep := driversTree(t)
	b, _ := newBuilder(t, tt.root)
	snap := snapshot(t, testNodesTOML)
	n := snap.Nodes.ByName["n001"]
	virtio := []string{"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_balloon.ko",
		"kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/virtio/virtio_ring.ko"}
	for _, c := range []struct {
		drivers []string
		want    []string
	}{
		{[]string{"virtio-net"}, append([]string{"kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko",
			"kernel/net/core/failover.ko"}, virtio...)},
		{[]string{"e1000e", "igb", "e100"}, append([]string{"kernel/drivers/i2c/algos/i2c-algo-bit.ko",
			"kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko", "kernel/drivers/net/ethernet/intel/igb/igb.ko",
			"kernel/drivers/pps/pps_core.ko", "kernel/drivers/ptp/ptp.ko"}, virtio...)},
		{[]string{"mlx4_en"}, append([]string{"kernel/drivers/net/ethernet/mellanox/mlx4/mlx4_core.ko",
			"kernel/drivers/net/ethernet/mellanox/mlx4/mlx4_en.ko"}, virtio...)},
	} {
		a, err := b.KernelModules(bg, snap, withDrivers(n, c.drivers...))
		if err != nil {
			t.Fatalf("%q: %v", c.drivers, err)
		}
		files := unpack(t, a)
		sort.Strings(c.want)
		if got := moduleFiles(files); strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%q: modules\n%s\nwant\n%s", c.drivers, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
		}
		md := "lib/modules/" + driversKver + "/"
		if got := files[md+"modules.dep"].data; got != dep {
			t.Errorf("%q: modules.dep is not the image's:\n%s", c.drivers, got)
		}
		for _, f := range []string{"modules.alias", "modules.builtin"} {
			if _, ok := files[md+f]; !ok {
				t.Errorf("%q: no %s", c.drivers, f)
			}
		}
	}

	// The default (no list): every network driver, as before.
	a, err := b.KernelModules(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	if got := moduleFiles(unpack(t, a)); len(got) != 14 {
		t.Errorf("default: %d modules, want all 14 but xfs:\n%s", len(got), strings.Join(got, "\n"))
	}
}

// TestKernelModulesDriversKey: the build is keyed by the set of drivers:
// the same set written in another order, with '-' for '_' or twice, is
// the same artifact; another set or none is another.
func TestKernelModulesDriversKey(t *testing.T) {
	tt, _ := driversTree(t)
	b, _ := newBuilder(t, tt.root)
	snap := snapshot(t, testNodesTOML)
	n := snap.Nodes.ByName["n001"]
	etag := func(drivers ...string) string {
		t.Helper()
		a, err := b.KernelModules(bg, snap, withDrivers(n, drivers...))
		if err != nil {
			t.Fatalf("%q: %v", drivers, err)
		}
		return a.ETag
	}
	first := etag("virtio_net", "e1000e")
	for _, same := range [][]string{{"e1000e", "virtio_net"}, {"e1000e", "virtio-net", "e1000e"}} {
		if got := etag(same...); got != first {
			t.Errorf("%q: ETag %s, want %s (the same set)", same, got, first)
		}
	}
	seen := map[string]string{first: "virtio_net,e1000e"}
	for _, other := range [][]string{{"virtio_net"}, {"e1000e"}, {"virtio_net", "e1000e", "igb"}, nil} {
		got := etag(other...)
		if prev, dup := seen[got]; dup {
			t.Errorf("%q has the ETag of %s", other, prev)
		}
		seen[got] = strings.Join(other, ",")
	}
}

// TestKernelModulesUnknownDriver: a listed module the kernel has neither
// as a module nor built in is an error naming the node, image, kernel
// version and module (ErrNotFound: HTTP 404 with the reason in the log),
// and no archive is built; an image without modules at all is one too.
func TestKernelModulesUnknownDriver(t *testing.T) {
	tt, _ := driversTree(t)
	b, _ := newBuilder(t, tt.root)
	snap := snapshot(t, testNodesTOML)
	n := snap.Nodes.ByName["n002"]
	_, err := b.KernelModules(bg, snap, withDrivers(n, "virtio_net", "e100", "mlx5_core", "bnxt-en"))
	if err == nil {
		t.Fatal("unknown module accepted")
	}
	msg := err.Error()
	for _, want := range []string{`node "n002"`, `image "debian"`, "kernel " + driversKver, "no module bnxt_en, mlx5_core"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "e100") || !errors.Is(err, ErrNotFound) {
		t.Errorf("error %q: e100 is built in; want ErrNotFound", msg)
	}

	tt2 := newTree(t)
	tt2.standard()
	b2, _ := newBuilder(t, tt2.root)
	_, err = b2.KernelModules(bg, snap, withDrivers(n, "virtio_net"))
	if err == nil || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no lib/modules/"+driversKver) {
		t.Fatalf("image without modules: %v", err)
	}
}
