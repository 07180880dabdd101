package provision

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

// hostileValues are values iPXE would read as more than a value: each
// would add the command "shell" (or expand a setting) if printed as is.
var hostileValues = []string{
	"quiet || shell",
	"quiet && shell",
	"quiet ; shell",
	"quiet\nshell",
	"quiet\r\nshell",
	"quiet #shell",
	"ip=${shell}",
}

// TestIPXENeverEmitsMetacharacters (issue 20, Low 10, defence in depth):
// config validation refuses such kernel_args, but the renderer must not
// emit them either, whatever the value and whichever template prints it:
// every printed value passes ipxeSafe, and a bad one fails the render (500,
// nothing of the script sent) instead of becoming iPXE commands.
func TestIPXENeverEmitsMetacharacters(t *testing.T) {
	e := newEnv(t, false)
	writeFile(t, filepath.Join(e.cfg.root, "ipxe", "custom.ipxe"),
		"#!ipxe\n# for {{.Node.Name}}\n{{$r := .Node.Root}}echo rack {{.Node.Tags.rack}} {{$r}}\n"+
			"{{range .Node.KernelArgs}}echo arg {{.}}\n{{end}}{{if .Node.Tags.rack}}echo {{printf \"%s!\" .Node.Tags.rack}}{{end}}\nboot\n")
	base := e.cfg.snap.Load()
	// set replaces the snapshot with one whose node n has been edited
	// around the validator.
	set := func(edit func(nodes *config.Nodes)) {
		t.Helper()
		nodes, err := config.ParseNodes("nodes.toml", []byte(testNodes))
		if err != nil {
			t.Fatal(err)
		}
		edit(nodes)
		snap := *base
		snap.Nodes = nodes
		e.cfg.snap.Store(&snap)
	}
	for _, bad := range hostileValues {
		// The built-in template, through kernel_args.
		set(func(n *config.Nodes) { n.ByName["n002"].KernelArgs = []string{"console=ttyS0", bad} })
		resp, body := e.get("/ipxe/" + macN002)
		wantCode(t, resp, body, http.StatusInternalServerError)
		if strings.Contains(string(body), "shell") || strings.Contains(string(body), "#!ipxe") {
			t.Errorf("kernel arg %q: script or value sent: %q", bad, body)
		}
		// A custom template, through a tag (never validated for iPXE) and
		// through kernel_args printed one by one.
		set(func(n *config.Nodes) { n.ByName["n003"].Tags["rack"] = bad })
		resp, body = e.get("/ipxe/" + macN003)
		wantCode(t, resp, body, http.StatusInternalServerError)
		if strings.Contains(string(body), "shell") {
			t.Errorf("tag %q: sent %q", bad, body)
		}
		set(func(n *config.Nodes) { n.ByName["n003"].KernelArgs = []string{bad} })
		resp, body = e.get("/ipxe/" + macN003)
		wantCode(t, resp, body, http.StatusInternalServerError)
	}
	if !strings.Contains(e.logs.String(), "iPXE") {
		t.Errorf("the refused render was not logged with its reason:\n%s", e.logs.String())
	}

	// Harmless values render as written: a comma stays, '|', '&' and '#'
	// inside a word are not iPXE syntax.
	set(func(n *config.Nodes) {
		n.ByName["n002"].KernelArgs = []string{"console=ttyS0,115200n8", "a|b", "x&y", "k=v#1"}
		n.ByName["n003"].Tags["rack"] = "r1"
	})
	resp, body := e.get("/ipxe/" + macN002)
	wantCode(t, resp, body, http.StatusOK)
	if !strings.Contains(string(body), " wwroot=tmpfs console=ttyS0,115200n8 a|b x&y k=v#1 || goto boot_failed\n") {
		t.Errorf("boot line:\n%s", body)
	}
	resp, body = e.get("/ipxe/" + macN003)
	wantCode(t, resp, body, http.StatusOK)
	want := "#!ipxe\n# for n003\necho rack r1 initramfs\necho arg console=ttyS0\necho arg quiet\necho r1!\nboot\n"
	if string(body) != want {
		t.Errorf("custom script %q, want %q", body, want)
	}
}
