// Command gentree turns a tree written by `wwserver init` into a benchmark
// tree with N nodes: nodes.toml with one profile ("default", as init writes
// it) and nodes n00001… with unique MACs and addresses, a MAC list for
// httpload, and optionally an insecure wwserver.toml and a fake image.
//
//	wwserver init /tmp/t --wwclient wwclient --address 127.0.0.1 --listen 127.0.0.1:29873
//	gentree -root /tmp/t -n 10000 -macs /tmp/t.macs
//
// Node i (1-based) is n%05d with MAC 52:54:01 + i as three bytes
// (52:54:01:00:00:01…) and address 10.100.0.10 + i in 10.100.0.0/16. The
// generated nodes.toml is loaded with wwserver's own config package before
// gentree returns.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/tools/internal/gen"
)

func main() {
	var (
		root      = flag.String("root", "", "served tree written by `wwserver init` (required)")
		n         = flag.Int("n", 1000, "number of nodes (1..1000000)")
		macsOut   = flag.String("macs", "", "also write the nodes' MACs, one per line, to this file")
		secure    = flag.String("secure", "", `set "secure = true|false" in wwserver.toml (empty: leave it)`)
		interval  = flag.String("update-interval", "", `set update_interval in wwserver.toml, e.g. "60s" (empty: leave it)`)
		source    = flag.String("source-check", "false", `set "source_check = true|false" in wwserver.toml; false (default): load generators run on 127.0.0.1, never from a node's address, and secure mode's source check would refuse every runtime overlay and heartbeat (bootstorm's nodes do use their own addresses: true)`)
		fakeImage = flag.Bool("fake-image", false, "replace images/default/rootfs with a fake image: a random boot/vmlinuz-6.1.0-1-amd64 and a few files")
		kernelMiB = flag.Int("kernel-mib", 8, "with -fake-image: kernel size in MiB")
		boot      = flag.String("boot", config.BootInitrd, `the profile's boot: initrd (iPXE loads the whole image) or twostage (wwclient fetches it in chunks; make storm)`)
	)
	flag.Parse()
	if *root == "" || *n < 1 || *n > 1000000 || *kernelMiB < 1 || *kernelMiB > 1024 ||
		(*boot != config.BootInitrd && *boot != config.BootTwoStage) {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*root, *n, *boot, *macsOut, *secure, *interval, *source, *fakeImage, *kernelMiB); err != nil {
		fmt.Fprintln(os.Stderr, "gentree:", err)
		os.Exit(1)
	}
}

func run(root string, n int, boot, macsOut, secure, interval, source string, fakeImage bool, kernelMiB int) error {
	serverPath := filepath.Join(root, config.ServerFile)
	if _, err := os.Stat(serverPath); err != nil {
		return fmt.Errorf("%s: %w (run `wwserver init` first)", serverPath, err)
	}
	if err := gen.EditServer(serverPath, secure, source, interval); err != nil {
		return err
	}
	if err := gen.WriteNodesFileBoot(root, n, boot); err != nil {
		return err
	}
	if macsOut != "" {
		if err := os.WriteFile(macsOut, []byte(gen.MACList(n)), 0o644); err != nil {
			return err
		}
	}
	if fakeImage {
		return gen.WriteFakeImage(filepath.Join(root, "images", "default", "rootfs"), kernelMiB)
	}
	return nil
}
