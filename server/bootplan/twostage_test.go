package bootplan

import (
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

func TestTwoStage(t *testing.T) {
	const d = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	node := &config.Node{Name: "n002", Root: "tmpfs", Boot: config.BootTwoStage, KernelArgs: []string{"console=ttyS0"}}
	p := New(server(false), node, mac, []string{"10.0.2.2:9873"})
	p.TwoStage(d)
	var names []string
	for _, f := range p.Initrds() {
		names = append(names, f.Name)
	}
	if got := strings.Join(names, " "); got != "modules.img.gz system.img.gz runtime.img.gz" {
		t.Errorf("initrds %q", got)
	}
	if got, want := p.CommandLine(), "wwid="+mac+" wwserver=10.0.2.1:9873,10.0.2.2:9873 wwimage="+d+" wwroot=tmpfs console=ttyS0"; got != want {
		t.Errorf("command line\n %q\nwant\n %q", got, want)
	}
	if p.Modules.URL != "http://10.0.2.1:9873/modules/"+mac || len(p.Modules.Fallbacks) != 1 ||
		p.Modules.Fallbacks[0] != "http://10.0.2.2:9873/modules/"+mac {
		t.Errorf("modules file %+v", p.Modules)
	}
	for _, f := range p.Files() {
		if f.Name == NameImage {
			t.Error("a two-stage plan loads the image")
		}
	}
}
