package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryErrorReported: one load reports every error of every file, each
// with file:line: key, sorted by file (load order) and line; a file that
// does not parse does not hide the others' errors.
func TestEveryErrorReported(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		ServerFile: `address = "10.0.0.300"
listen = ":99999"
update_interval = "10ms"
colour = "blue"
[dhcp]
mode = "sideways"
`,
		NodesFile: `[profiles.default]
image = "debian"

[nodes.n1]
profiles = ["default"]
[nodes.n1.network.eth0]
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.0.0.1"

[nodes.n2]
profiles = ["default"]
root = "nfs"
[nodes.n2.network.eth0]
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.0.0.999"
`,
		"nodes.d/a.toml": `[nodes.a1]
profiles = ["nope"]
shoe_size = 9
`,
		"nodes.d/b.toml": "[nodes.b1\nimage = \"x\"\n",
		"nodes.d/c.toml": `[nodes.c1]
image = "bad/name"
[nodes.c1.network.eth0]
netmask = "255.0.255.0"
`,
	})
	_, err := LoadServer(filepath.Join(dir, ServerFile))
	var list *Errors
	if !errors.As(err, &list) {
		t.Fatalf("server: want *Errors, got %T %v", err, err)
	}
	srv := filepath.Join(dir, ServerFile)
	wantServer := []string{
		srv + ":1: address: ",
		srv + ":2: listen: bad port",
		srv + ":3: update_interval: ",
		srv + ":4: colour: unknown key",
		srv + ":6: dhcp.mode: ",
	}
	checkLines(t, "wwserver.toml", ErrorLines(err), wantServer)

	_, err = LoadNodesTree(dir)
	if !errors.As(err, &list) {
		t.Fatalf("nodes: want *Errors, got %T %v", err, err)
	}
	var one *Error
	if !errors.As(err, &one) || one.File == "" {
		t.Errorf("errors.As does not find an *Error in %v", err)
	}
	nodes := filepath.Join(dir, NodesFile)
	d := filepath.Join(dir, NodesDir)
	checkLines(t, "nodes files", ErrorLines(err), []string{
		nodes + ":12: nodes.n2.root: ",
		nodes + ":14: nodes.n2.network.eth0.hwaddr: MAC 52:54:00:00:00:01 is also used by nodes.n1.network.eth0",
		nodes + ":15: nodes.n2.network.eth0.ipaddr: ",
		// a.toml: the undefined profile is not reported while b.toml,
		// which might define it, does not parse.
		filepath.Join(d, "a.toml") + ":3: nodes.a1.shoe_size: unknown key",
		filepath.Join(d, "b.toml") + ":2: ",
		filepath.Join(d, "c.toml") + ":2: nodes.c1.image: ",
		filepath.Join(d, "c.toml") + ":4: nodes.c1.network.eth0.netmask: ",
	})
}

func checkLines(t *testing.T, what string, got, wantPrefixes []string) {
	t.Helper()
	if len(got) != len(wantPrefixes) {
		t.Errorf("%s: %d errors, want %d:\n%s", what, len(got), len(wantPrefixes), strings.Join(got, "\n"))
		return
	}
	for i, w := range wantPrefixes {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("%s: error %d = %q, want prefix %q", what, i, got[i], w)
		}
	}
}

// TestErrorsCapped: a file of many broken nodes reports MaxErrors of them
// and counts the rest.
func TestErrorsCapped(t *testing.T) {
	var b strings.Builder
	const n = MaxErrors + 50
	for i := range n {
		fmt.Fprintf(&b, "[nodes.n%d]\nimage = \"debian\"\nroot = \"nfs\"\n", i)
	}
	_, err := ParseNodes("nodes.toml", []byte(b.String()))
	lines := ErrorLines(err)
	if len(lines) != MaxErrors+1 || lines[len(lines)-1] != "(and 50 more errors)" {
		t.Errorf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
}
