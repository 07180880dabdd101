package check

import (
	"fmt"
	"strings"

	"github.com/wwcluster/ww/server/artifact"
	"github.com/wwcluster/ww/server/config"
)

// netDriverProblems are the two-stage nodes whose network_drivers name
// modules their image's kernel does not have: their first stage would find
// no NIC driver (the server refuses their modules initrd). Looked up once
// per image, kernel setting and list.
func netDriverProblems(b *artifact.Builder, snap *config.Snapshot) []string {
	var per nodeProblems
	seen := map[[3]string]string{} // image, kernel, list → message ("" none)
	for _, n := range snap.Nodes.List {
		if !n.TwoStage() || len(n.NetworkDrivers) == 0 {
			continue
		}
		key := [3]string{n.Image, n.Kernel, strings.Join(config.NetworkDriverSet(n.NetworkDrivers), ",")}
		msg, ok := seen[key]
		if !ok {
			kver, missing, err := b.MissingNetworkDrivers(n)
			switch {
			case err != nil:
				msg = fmt.Sprintf("image %q, kernel %s: %v", n.Image, kver, err)
			case len(missing) > 0:
				msg = fmt.Sprintf("image %q, kernel %s has no module %s (neither in modules.dep nor built in): the node's first stage would have no network",
					n.Image, kver, strings.Join(missing, ", "))
			}
			seen[key] = msg
		}
		if msg != "" {
			per.add(n, ".network_drivers", msg)
		}
	}
	return per.lines()
}
