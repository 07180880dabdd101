package bootscript

import (
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

// TestTwoStageScripts: with an image digest a two-stage node's iPXE script
// and GRUB config load the network drivers instead of the image and pass
// wwimage=; a single-stage node ignores the digest.
func TestTwoStageScripts(t *testing.T) {
	const d = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	snap := snapshot(t, false)
	one := *snap.Nodes.ByMAC[macN002]
	one.Boot = config.BootInitrd
	single := &one
	two := one
	two.Boot = config.BootTwoStage
	ipxe, err := NewIPXE(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	g := newGRUB(t)
	for _, r := range []struct {
		name string
		fn   func(Request) ([]byte, string, error)
	}{{"ipxe", ipxe.Script}, {"grub", g.Script}} {
		script, _, err := r.fn(Request{Snap: snap, Node: &two, MAC: macN002, Servers: []string{self}, ImageDigest: d})
		if err != nil {
			t.Fatal(err)
		}
		s := string(script)
		if !strings.Contains(s, "/modules/"+macN002) || !strings.Contains(s, "wwimage="+d) || strings.Contains(s, "/image/"+macN002) {
			t.Errorf("%s two-stage script:\n%s", r.name, s)
		}
		script, _, err = r.fn(Request{Snap: snap, Node: single, MAC: macN002, Servers: []string{self}, ImageDigest: d})
		if err != nil {
			t.Fatal(err)
		}
		if s := string(script); strings.Contains(s, "wwimage=") || !strings.Contains(s, "/image/"+macN002) {
			t.Errorf("%s single-stage script took the digest:\n%s", r.name, s)
		}
	}
}
