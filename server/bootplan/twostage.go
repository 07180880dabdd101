package bootplan

import (
	"slices"
	"strings"

	"github.com/wwcluster/ww/server/nodeapi"
)

// NameModules is what the node calls its network drivers (two-stage boot).
const NameModules = "modules.img.gz"

// TwoStage turns p into a two-stage boot of the image whose index has
// sha256 digest: the boot loader loads the network drivers instead of the
// image, and the kernel command line gets wwimage=DIGEST (after
// wwserver=). wwclient fetches the image itself.
func (p *Plan) TwoStage(digest string) {
	p.ImageDigest = digest
	p.Modules = p.file("modules", NameModules, "network drivers", nodeapi.Modules)
	i := slices.IndexFunc(p.Args, func(a string) bool { return strings.HasPrefix(a, nodeapi.ArgServer+"=") })
	p.Args = slices.Insert(p.Args, i+1, nodeapi.ArgImage+"="+digest)
}
