package check

import (
	"context"
	"fmt"
	"io"

	"github.com/wwcluster/ww/server/artifact"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/hostlist"
	"github.com/wwcluster/ww/server/pesign"
)

// secureBoot are the problems of nodes booting with GRUB (bootloader =
// "grub": shim, then GRUB, for UEFI Secure Boot): a kernel without an
// Authenticode signature (read once per image and kernel setting, grouped
// like the other per-node lines), [grub] files that did not resolve, and
// a TFTP window set above 1 (GRUB drops packets of a blind window). srvPath
// names wwserver.toml in messages.
func secureBoot(srvPath string, b *artifact.Builder, snap *config.Snapshot) []string {
	var problems []string
	if snap.UsesGRUB() && snap.TFTPAnticipate() > 1 {
		problems = append(problems, fmt.Sprintf("%s: tftp.anticipate: %d with nodes booting with GRUB: GRUB drops packets "+
			"of a window sent blind and waits 2 s for each (boots take minutes); set 1, or 0 for the automatic value",
			srvPath, snap.TFTPAnticipate()))
	}
	var per nodeProblems
	var grubNodes []string
	verdict := map[[2]string]string{} // (image, kernel) → unsignedKernel's
	for _, n := range snap.Nodes.List {
		if snap.Server.LoaderFor(n) != config.LoaderGRUB {
			continue
		}
		grubNodes = append(grubNodes, n.Name)
		k := [2]string{n.Image, n.Kernel}
		msg, seen := verdict[k]
		if !seen {
			msg = unsignedKernel(b, snap, n)
			verdict[k] = msg
		}
		if msg != "" {
			per.add(n, ".kernel", msg)
		}
	}
	problems = append(problems, per.lines()...)
	if len(grubNodes) > 0 {
		for _, err := range snap.Server.GRUBFileProblems() {
			problems = append(problems, fmt.Sprintf("%s (nodes booting with GRUB: %s)", err, hostlist.Compress(grubNodes)))
		}
	}
	return problems
}

// unsignedKernel says why node n's kernel will not start under Secure Boot
// through shim and GRUB ("" when it carries an Authenticode signature, or
// when there is no kernel: bootProblems reports that).
func unsignedKernel(b *artifact.Builder, snap *config.Snapshot, n *config.Node) string {
	art, err := b.Kernel(context.Background(), snap, n)
	if err != nil {
		return ""
	}
	f, err := art.Open()
	if err != nil {
		return fmt.Sprintf("kernel %s: %v", art.Name, err)
	}
	defer f.Close()
	signed, err := pesign.Signed(seekReaderAt{f}, art.Size)
	switch {
	case err != nil:
		return fmt.Sprintf("kernel %s cannot boot with bootloader = %q under Secure Boot: %v", art.Name, config.LoaderGRUB, err)
	case !signed:
		return fmt.Sprintf("kernel %s has no Authenticode signature: with bootloader = %q, shim and GRUB refuse it "+
			"under Secure Boot (use a signed kernel, e.g. Debian's linux-image-amd64)", art.Name, config.LoaderGRUB)
	}
	return ""
}

// seekReaderAt reads at an offset by seeking first (one reader at a time).
type seekReaderAt struct{ r io.ReadSeeker }

func (s seekReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if _, err := s.r.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	return io.ReadFull(s.r, p)
}
