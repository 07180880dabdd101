package check

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNetDriverProblems: two-stage nodes whose network_drivers name a
// module their image's kernel lacks make one line naming the file, key,
// image, kernel, module and nodes; a module the kernel has (or has built
// in) is no problem.
func TestNetDriverProblems(t *testing.T) {
	root := t.TempDir()
	write := func(rel, data string) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	md := "images/deb/rootfs/lib/modules/6.1.0-28-amd64/"
	write("images/deb/rootfs/boot/vmlinuz-6.1.0-28-amd64", "kernel")
	write(md+"modules.dep", "kernel/drivers/net/virtio_net.ko:\nkernel/drivers/net/ethernet/intel/e1000e/e1000e.ko:\n")
	write(md+"modules.builtin", "kernel/drivers/net/ethernet/intel/e100.ko\n")
	write("wwserver.toml", "address = \"10.0.2.1\"\n")
	nodes := `
[profiles.p]
image = "deb"
boot = "twostage"
network_drivers = ["virtio-net", "mlx5_core"]
[nodes.a1]
profiles = ["p"]
[nodes.a1.network.eth0]
hwaddr = "52:54:00:00:00:01"
[nodes.a2]
profiles = ["p"]
[nodes.a2.network.eth0]
hwaddr = "52:54:00:00:00:02"
[nodes.a3]
profiles = ["p"]
network_drivers = ["e1000e", "e100"]
[nodes.a3.network.eth0]
hwaddr = "52:54:00:00:00:03"
`
	write("nodes.toml", nodes)
	log := slog.New(slog.DiscardHandler)
	var lines []string
	for _, p := range Tree(root, log) {
		if strings.Contains(p, "network_drivers") {
			lines = append(lines, p)
		}
	}
	want := filepath.Join(root, "nodes.toml") + `: nodes.a1.network_drivers: image "deb", kernel 6.1.0-28-amd64 has no module mlx5_core` +
		` (neither in modules.dep nor built in): the node's first stage would have no network (2 nodes: a[1-2])`
	if len(lines) != 1 || lines[0] != want {
		t.Fatalf("network_drivers problems:\n%s\nwant\n%s", strings.Join(lines, "\n"), want)
	}
}
