package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sort"

	"github.com/wwcluster/ww/server/config"
)

// Fingerprint is one value for every image and overlay tree the snapshot's
// nodes are served from. Servers that share a cluster (etcd) publish it,
// so they can tell when their trees differ. Trees that cannot be read are
// included by name and error, so a missing image also shows as a
// difference.
func (b *Builder) Fingerprint(ctx context.Context, snap *config.Snapshot) string {
	fps := b.newFingerprints()
	trees := map[string]treeKind{}
	for _, n := range snap.Nodes.List {
		if checkName("image", n.Image) == nil {
			trees["images/"+n.Image] = treeImage
		}
		for _, o := range append(append([]string{}, n.SystemOverlays...), n.RuntimeOverlays...) {
			if checkName("overlay", o) == nil {
				trees["overlays/"+o] = treeOverlay
			}
		}
	}
	names := make([]string, 0, len(trees))
	for name := range trees {
		names = append(names, name)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, name := range names {
		dir := b.overlayDir(name[len("overlays/"):])
		if trees[name] == treeImage {
			dir = b.imageDir(name[len("images/"):])
		}
		fp, err := fps.get(ctx, dir, trees[name])
		h.Write([]byte(name + "\x00"))
		if err != nil {
			h.Write([]byte("error: " + err.Error()))
		} else {
			h.Write([]byte(fp.hash))
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
