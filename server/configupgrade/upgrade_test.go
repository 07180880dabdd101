package configupgrade

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/config"
)

const v1Server = `# wwserver.toml of a schema 1 tree
# (kept comment)

address = "10.0.2.1"   # nodes reach us here
listen = ":9873"

[dhcp]
enabled = false
# the old boolean form
answer_router_solicitations = false   # off: policy
`

const v1Nodes = `# nodes, by hand
[profiles.default]
image = "debian" # the image

[nodes.n001]
profiles = ["default"]
[nodes.n001.network.eth0]
hwaddr = "52:54:00:00:00:01"
`

func tree(t *testing.T, server, nodes string) string {
	t.Helper()
	root := t.TempDir()
	write(t, filepath.Join(root, config.ServerFile), server)
	if nodes != "" {
		write(t, filepath.Join(root, config.NodesFile), nodes)
	}
	return root
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o640); err != nil {
		t.Fatal(err)
	}
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUpgradeV1(t *testing.T) {
	root := tree(t, v1Server, v1Nodes)
	files, err := Plan(root)
	if err != nil {
		t.Fatal(err)
	}
	var sum string
	for _, f := range files {
		sum += f.Summary()
	}
	for _, want := range []string{
		"wwserver.toml:4: schema: insert schema = 2",
		`wwserver.toml:10: dhcp.answer_router_solicitations: false → "false"`,
		"nodes.toml:2: schema: insert schema = 2",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("plan lacks %q:\n%s", want, sum)
		}
	}
	// Planning writes nothing.
	if readText(t, filepath.Join(root, config.ServerFile)) != v1Server {
		t.Fatal("Plan wrote the file")
	}
	if err := Apply(files); err != nil {
		t.Fatal(err)
	}
	srv := readText(t, filepath.Join(root, config.ServerFile))
	for _, l := range strings.Split(v1Server, "\n") {
		if strings.Contains(l, "#") && !strings.Contains(srv, strings.TrimSpace(l[strings.Index(l, "#"):])) {
			t.Errorf("comment %q lost:\n%s", l, srv)
		}
	}
	if !strings.Contains(srv, `answer_router_solicitations = "false"   # off: policy`) || !strings.Contains(srv, "(kept comment)\n\n# Format version") {
		t.Errorf("upgraded wwserver.toml:\n%s", srv)
	}
	if got := readText(t, filepath.Join(root, config.ServerFile+OldSuffix)); got != v1Server {
		t.Errorf(".old copy differs:\n%s", got)
	}
	if fi, _ := os.Stat(filepath.Join(root, config.ServerFile)); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the file's 0640", fi.Mode())
	}
	if got := readText(t, filepath.Join(root, config.NodesFile)); !strings.HasPrefix(got, "# nodes, by hand\n# Format version") ||
		!strings.Contains(got, "schema = 2\n\n[profiles.default]\nimage = \"debian\" # the image") {
		t.Errorf("upgraded nodes.toml:\n%s", got)
	}
	snap, err := config.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Server.Schema != config.Schema || snap.Server.DHCP.AnswerRouterSolicitations != config.AnswerRSNever {
		t.Errorf("loaded: schema %d, answer_router_solicitations %q", snap.Server.Schema, snap.Server.DHCP.AnswerRouterSolicitations)
	}
	// Current now: nothing to do, and no second .old.
	again, err := Plan(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range again {
		if len(f.Changes) != 0 {
			t.Errorf("second plan: %s", f.Summary())
		}
	}
}

func TestUpgradeRefusals(t *testing.T) {
	// A newer file: file:line: key.
	root := tree(t, "address = \"10.0.2.1\"\n\nschema = 9\n", "")
	_, err := Plan(root)
	var e *config.Error
	if !errors.As(err, &e) || e.Line != 3 || e.Key != "schema" || !strings.HasSuffix(e.File, config.ServerFile) {
		t.Errorf("newer schema: %v", err)
	}
	root = tree(t, "address = \"10.0.2.1\"\n", "schema = 7\n")
	if _, err := Plan(root); err == nil || !strings.Contains(err.Error(), "nodes.toml:1: schema: schema 7 is newer") {
		t.Errorf("newer nodes.toml: %v", err)
	}
	// A form the line editor cannot rewrite.
	root = tree(t, "address = \"10.0.2.1\"\ndhcp = { answer_router_solicitations = true }\n", "")
	if _, err := Plan(root); err == nil || !strings.Contains(err.Error(), "cannot rewrite") {
		t.Errorf("inline table: %v", err)
	}
	// A broken file is not upgraded.
	root = tree(t, "address = \"not an address\"\n", "")
	if _, err := Plan(root); err == nil || !strings.Contains(err.Error(), "fix it first") {
		t.Errorf("broken file: %v", err)
	}
	// An earlier upgrade's copy is never overwritten.
	root = tree(t, v1Server, "")
	write(t, filepath.Join(root, config.ServerFile+OldSuffix), "precious")
	files, err := Plan(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(files); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("existing .old: %v", err)
	}
	if readText(t, filepath.Join(root, config.ServerFile)) != v1Server || readText(t, filepath.Join(root, config.ServerFile+OldSuffix)) != "precious" {
		t.Error("files touched despite the refusal")
	}
}

func TestUpgradeExplicitSchemaOne(t *testing.T) {
	root := tree(t, "schema = 1 # old\naddress = \"10.0.2.1\"\n", "")
	files, err := Plan(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(files); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, filepath.Join(root, config.ServerFile)); got != "schema = 2 # old\naddress = \"10.0.2.1\"\n" {
		t.Errorf("got:\n%s", got)
	}
}
