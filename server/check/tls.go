package check

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"time"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/tlscert"
)

// expirySoon: a serving certificate ending within this is reported.
const expirySoon = 30 * 24 * time.Hour

// tlsProblems checks [tls] when enabled: the serving pair loads, verifies
// for wwserver.toml's address against the tree's CA and against the pin
// nodes get (each pin overlay there is), and is not about to expire.
func tlsProblems(srvPath, root string, srv *config.Server) []string {
	if !srv.TLS.Enabled {
		return nil
	}
	bad := func(format string, a ...any) []string {
		return []string{fmt.Sprintf("%s: tls.enabled: ", srvPath) + fmt.Sprintf(format, a...)}
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(root, tlscert.CertFile), filepath.Join(root, tlscert.KeyFile))
	if err != nil {
		return bad("%v (wwserver tls rotate %s makes one)", err, root)
	}
	var out []string
	pins := []string{filepath.Join(root, tlscert.CAFile)}
	for _, o := range tlscert.PinOverlays {
		pins = append(pins, filepath.Join(root, "overlays", o, tlscert.PinInImage))
	}
	for i, p := range pins {
		cas, err := tlscert.ReadCerts(p)
		if err != nil {
			if i > 0 {
				continue // an overlay without a pin: nodes using it cannot use TLS, reported by their agents
			}
			return bad("%v", err)
		}
		if err := tlscert.Verify(&pair, cas, []string{srv.Address}); err != nil {
			out = append(out, bad("%s does not verify the serving certificate (nodes would refuse it): %v", p, err)...)
		}
	}
	if leaf, err := tlscert.ParseLeaf(&pair); err == nil && time.Until(leaf.NotAfter) < expirySoon {
		out = append(out, bad("the serving certificate expires %s: wwserver tls rotate %s", leaf.NotAfter.Format(time.DateOnly), root)...)
	}
	return out
}

// tlsPinless are the nodes none of whose system overlays carries the pin
// (with [tls] on their wwclient would have no CA to trust), one line per
// group of nodes.
func tlsPinless(root string, snap *config.Snapshot) []string {
	if !snap.Server.TLS.Enabled {
		return nil
	}
	var per nodeProblems
	has := map[string]bool{}
	for _, n := range snap.Nodes.List {
		found := false
		for _, o := range n.SystemOverlays {
			ok, seen := has[o]
			if !seen {
				_, err := tlscert.ReadCerts(filepath.Join(root, "overlays", o, tlscert.PinInImage))
				ok = err == nil
				has[o] = ok
			}
			found = found || ok
		}
		if !found {
			per.add(n, ".system_overlays", fmt.Sprintf("tls.enabled, but no system overlay has %s (the CA wwclient pins): copy tls/ca.pem there", tlscert.PinInImage))
		}
	}
	return per.lines()
}
