package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpgradeCommand: init writes the current schema; a schema 1 tree is
// reported by --check (non-zero, nothing written) and rewritten by upgrade;
// a newer file is refused by every command that reads it.
func TestUpgradeCommand(t *testing.T) {
	dir := initTree(t)
	if out := cli(t, true, "upgrade", "--check", dir); !strings.Contains(out, "wwserver.toml: schema 2, current") ||
		!strings.Contains(out, "nodes.toml: schema 2, current") {
		t.Errorf("fresh tree:\n%s", out)
	}

	// Make it a schema 1 tree: no schema lines, the old boolean.
	srvPath, nodesPath := filepath.Join(dir, "wwserver.toml"), filepath.Join(dir, "nodes.toml")
	for _, p := range []string{srvPath, nodesPath} {
		b, _ := os.ReadFile(p)
		text := strings.Replace(string(b), "schema = 2\n", "", 1)
		text = strings.Replace(text, `answer_router_solicitations = "auto"`, "answer_router_solicitations = true", 1)
		writeTestFile(t, p, text)
	}
	v1, _ := os.ReadFile(srvPath)
	out := cli(t, false, "upgrade", "--check", dir)
	for _, want := range []string{"wwserver.toml:", `dhcp.answer_router_solicitations: true → "true"`, "nodes.toml:", "3 change(s) needed"} {
		if !strings.Contains(out, want) {
			t.Errorf("--check lacks %q:\n%s", want, out)
		}
	}
	if now, _ := os.ReadFile(srvPath); string(now) != string(v1) {
		t.Error("--check wrote the file")
	}
	if out := cli(t, true, "upgrade", dir); !strings.Contains(out, "upgraded "+srvPath+" to schema 2 (was 1; old copy: "+srvPath+".old)") {
		t.Errorf("upgrade:\n%s", out)
	}
	cli(t, true, "upgrade", "--check", dir)
	if out := cli(t, true, "nodes", dir); !strings.Contains(out, "n001") {
		t.Errorf("nodes after upgrade:\n%s", out)
	}

	// A file from a newer wwserver.
	b, _ := os.ReadFile(nodesPath)
	writeTestFile(t, nodesPath, strings.Replace(string(b), "schema = 2", "schema = 5", 1))
	for _, args := range [][]string{{"upgrade", "--check", dir}, {"check", dir}, {"nodes", dir}} {
		if out := cli(t, false, args...); !strings.Contains(out, "nodes.toml:") || !strings.Contains(out, ": schema: schema 5 is newer than this wwserver reads (2)") {
			t.Errorf("%v on a newer nodes.toml:\n%s", args, out)
		}
	}
}
