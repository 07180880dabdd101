package artifact

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/wwcluster/ww/server/config"
)

const testServerTOML = `
address = "10.0.2.1"
listen = ":9873"
update_interval = "30s"
secure = true
`

const testNodesTOML = `
[profiles.default]
image = "debian"
boot = "initrd"
kernel_args = ["console=ttyS0", "quiet"]
system_overlays = ["wwinit"]
runtime_overlays = ["generic"]

[nodes.n001]
profiles = ["default"]
asset_key = "secret1"
[nodes.n001.tags]
rack = "r1"
[nodes.n001.network.eth0]
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.0.2.11"
netmask = "255.255.255.0"

[nodes.n002]
profiles = ["default"]
[nodes.n002.tags]
rack = "r2"
[nodes.n002.network.eth0]
hwaddr = "52:54:00:00:00:02"
ipaddr = "10.0.2.12"
netmask = "255.255.0.0"
`

func snapshot(t testing.TB, nodesTOML string) *config.Snapshot {
	t.Helper()
	srv, err := config.ParseServer("wwserver.toml", []byte(testServerTOML))
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := config.ParseNodes("nodes.toml", []byte(nodesTOML))
	if err != nil {
		t.Fatal(err)
	}
	return &config.Snapshot{Server: srv, Nodes: nodes, Gen: 1, LoadedAt: time.Now()}
}

// testTree is a served tree in a temp dir.
type testTree struct {
	t    testing.TB
	root string
}

func newTree(t testing.TB) *testTree {
	return &testTree{t: t, root: t.TempDir()}
}

// file writes root/rel with content and mode, creating parents.
func (tt *testTree) file(rel, content string, mode os.FileMode) string {
	tt.t.Helper()
	p := filepath.Join(tt.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tt.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		tt.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask
		tt.t.Fatal(err)
	}
	return p
}

func (tt *testTree) symlink(rel, target string) {
	tt.t.Helper()
	p := filepath.Join(tt.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tt.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		tt.t.Fatal(err)
	}
}

func (tt *testTree) dir(rel string, mode os.FileMode) {
	tt.t.Helper()
	p := filepath.Join(tt.root, rel)
	if err := os.MkdirAll(p, mode); err != nil {
		tt.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		tt.t.Fatal(err)
	}
}

// standard fills the tree with a debian image and wwinit + generic overlays.
func (tt *testTree) standard() {
	tt.file("images/debian/rootfs/etc/os-release", "ID=debian\n", 0o644)
	tt.file("images/debian/rootfs/bin/busybox", strings.Repeat("busybox!", 1000), 0o755)
	tt.symlink("images/debian/rootfs/bin/sh", "busybox")
	tt.file("images/debian/rootfs/boot/vmlinuz-6.1.0-9-amd64", "kernel 9", 0o644)
	tt.file("images/debian/rootfs/boot/vmlinuz-6.1.0-28-amd64", "kernel 28", 0o644)
	tt.file("images/debian/rootfs/boot/initrd.img-6.1.0-28-amd64", "big initrd", 0o644)

	tt.file("overlays/wwinit/usr/sbin/wwclient", strings.Repeat("agent binary ", 5000), 0o755)
	tt.symlink("overlays/wwinit/init", "usr/sbin/wwclient")
	tt.file("overlays/wwinit/etc/wwclient/wwclient.toml.ww",
		`node = "{{.Node.Name}}"
server = "{{.Server.Address}}:{{.Server.Port}}"
update_interval = {{.Server.UpdateInterval}}
secure = {{.Server.Secure}}
asset_key = "{{.Node.AssetKey}}"
`, 0o600)
	tt.file("overlays/wwinit/etc/hosts.ww",
		`127.0.0.1 localhost
{{range .Nodes}}{{.Primary.IPAddr}} {{.Name}}
{{end}}`, 0o644)
	tt.file("overlays/wwinit/etc/motd", "welcome\n", 0o644)

	tt.file("overlays/generic/etc/issue.ww",
		`{{upper .Node.Name}} rack={{.Node.Tags.rack}} args={{join .Node.KernelArgs ","}} prefix={{prefixlen .Node.Primary.Netmask}} {{lower "ABC"}}
`, 0o644)
	tt.file("overlays/generic/etc/static", "same for all\n", 0o644)
}

func newBuilder(t testing.TB, root string) (*Builder, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	b, err := New(Options{Root: root, Registerer: reg, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, reg
}

// counter reads a counter with label kind (or the only series) from reg.
func counter(t testing.TB, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// readAll returns an artifact's bytes through Open.
func readAll(t testing.TB, a *Artifact) []byte {
	t.Helper()
	r, err := a.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != a.Size {
		t.Fatalf("%s: read %d bytes, Size says %d", a.Name, len(data), a.Size)
	}
	return data
}

// archFile is one entry read back from an archive.
type archFile struct {
	hdr  cpio.Header
	data string
}

// members splits gzip data into its members, decompressed, checking that
// each holds exactly one complete cpio archive whose length is a multiple of 4.
func members(t testing.TB, data []byte) [][]byte {
	t.Helper()
	var out [][]byte
	br := bytes.NewReader(data)
	for br.Len() > 0 {
		zr, err := gzip.NewReader(br)
		if err != nil {
			t.Fatalf("member %d: %v", len(out), err)
		}
		zr.Multistream(false)
		m, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("member %d: %v", len(out), err)
		}
		if len(m)%4 != 0 {
			t.Fatalf("member %d: cpio archive of %d bytes is not padded to 4", len(out), len(m))
		}
		if !bytes.Contains(m, []byte("TRAILER!!!")) {
			t.Fatalf("member %d: no TRAILER!!!", len(out))
		}
		out = append(out, m)
	}
	return out
}

// listArchives reads concatenated cpio archives ("gzip -dc | cpio -t" for
// several archives) from uncompressed data.
func listArchives(t testing.TB, data []byte) (map[string]archFile, []string) {
	t.Helper()
	files := map[string]archFile{}
	var order []string
	r := bytes.NewReader(data)
	for r.Len() > 0 {
		// skip zero padding between archives
		if b, _ := r.ReadByte(); b == 0 {
			continue
		}
		r.UnreadByte()
		cr := cpio.NewReader(r)
		for {
			h, err := cr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			d, err := io.ReadAll(cr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = archFile{hdr: *h, data: string(d)}
			order = append(order, h.Name)
		}
		// the reader stops after TRAILER's header; its (empty) body is padded
		for r.Len() > 0 {
			if b, _ := r.ReadByte(); b != 0 {
				r.UnreadByte()
				break
			}
		}
	}
	return files, order
}

// unpack lists all archives of a gzip artifact.
func unpack(t testing.TB, a *Artifact) map[string]archFile {
	t.Helper()
	var all []byte
	for _, m := range members(t, readAll(t, a)) {
		all = append(all, m...)
	}
	files, _ := listArchives(t, all)
	return files
}

var bg = context.Background()
