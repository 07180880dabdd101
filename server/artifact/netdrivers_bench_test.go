package artifact

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkNetworkDrivers builds the modules initrd of a real image's
// kernel (WW_BENCH_ROOTFS, default the hpc image build/hpc-image/rootfs)
// for the default (every network driver) and for typical network_drivers
// lists, and reports its gzip and cpio bytes and module count next to the
// build time (one core: modules initrds are compressed on one). Run: WW_BENCH_ROOTFS=DIR go test -run XXX -bench NetworkDrivers -benchtime 3x ./server/artifact/
func BenchmarkNetworkDrivers(b *testing.B) {
	rootfs := os.Getenv("WW_BENCH_ROOTFS")
	if rootfs == "" {
		rootfs = "../../build/hpc-image/rootfs"
	}
	kernels, _ := filepath.Glob(filepath.Join(rootfs, "boot", "vmlinuz-*"))
	if len(kernels) == 0 {
		b.Skip("no kernel in ", rootfs, " (set WW_BENCH_ROOTFS)")
	}
	kver := strings.TrimPrefix(filepath.Base(kernels[len(kernels)-1]), "vmlinuz-")
	for _, c := range []struct {
		name    string
		drivers []string
	}{
		{"default", nil},
		{"virtio_net", []string{"virtio_net"}},
		{"e1000e,igb,ixgbe,mlx5_core", []string{"e1000e", "igb", "ixgbe", "mlx5_core"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			mods := moduleCount(b, rootfs, kver, c.drivers)
			raw := &countWriter{w: io.Discard}
			if err := writeModules(raw, rootfs, kver, c.drivers); err != nil {
				b.Fatal(err)
			}
			var size int64
			for b.Loop() {
				cw := &countWriter{w: io.Discard}
				if err := writeGzip(cw, kindModules.parallel, func(w io.Writer) error {
					return writeModules(w, rootfs, kver, c.drivers)
				}); err != nil {
					b.Fatal(err)
				}
				size = cw.n
			}
			b.ReportMetric(float64(size), "gzip-bytes")
			b.ReportMetric(float64(raw.n), "cpio-bytes")
			b.ReportMetric(float64(mods), "modules")
		})
	}
}

func moduleCount(b *testing.B, rootfs, kver string, drivers []string) int {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	m := &modWriter{root: root, cw: newArchive(io.Discard), done: map[string]bool{}}
	_, want, err := m.index(kver, drivers)
	if err != nil {
		b.Fatal(err)
	}
	return len(want)
}
