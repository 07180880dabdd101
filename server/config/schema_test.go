package config

import (
	"errors"
	"strings"
	"testing"
)

// TestSchemaFastParse: a nodes file with schema stays on the fast parser
// and decodes as TOML does; forms it does not take fall back.
func TestSchemaFastParse(t *testing.T) {
	for _, text := range []string{
		"schema = 2\n[nodes.n1]\nimage = \"x\"\n",
		"# c\nschema=2 # two\n\n[profiles.p]\n",
		"schema = 1\n",
	} {
		if !checkFast(t, []byte(text)) {
			t.Errorf("fast parser refused:\n%s", text)
		}
	}
	for _, text := range []string{
		"schema = 0x2\n",
		"schema = 02\n",
		"schema = 2\nschema = 2\n",
		"[nodes]\nschema = 2\n",
		"[nodes.n1]\nimage = \"x\"\n[profiles.p]\n", // (control: no schema)
	} {
		checkFast(t, []byte(text)) // accepted or not, the same as TOML
	}
	if f, ok := fastParseNodes([]byte("schema = 2\n")); !ok || f.Schema != 2 {
		t.Errorf("schema = 2: %+v %v", f, ok)
	}
}

// TestSchemaNewerRefused: a file newer than this wwserver is refused with
// file:line: schema, before anything else of it is read (even a key whose
// type no longer fits).
func TestSchemaNewerRefused(t *testing.T) {
	srv := "# server\naddress = \"10.0.2.1\"\nschema = 3\nlisten = 9873\nnew_key = 1\n"
	_, err := ParseServer("wwserver.toml", []byte(srv))
	var e *Error
	if !errors.As(err, &e) || e.Line != 3 || e.Key != SchemaKey || !strings.Contains(e.Msg, "newer than this wwserver reads (2)") {
		t.Errorf("newer wwserver.toml: %v", err)
	}
	if _, err := ParseServer("wwserver.toml", []byte("address = \"10.0.2.1\"\nschema = 0\n")); err == nil || !strings.Contains(err.Error(), "schema: must be 1..2") {
		t.Errorf("schema = 0: %v", err)
	}
	for _, nodes := range []string{
		"schema = 3\n[nodes.n1]\nimage = \"x\"\n",
		"\nschema = 3\n[nodes.n1]\nimage = 7\nfuture = true\n",
	} {
		_, err = ParseNodesFiles([]Source{{Path: "nodes.toml", Data: []byte(nodes)}})
		if err == nil || !strings.Contains(err.Error(), "nodes.toml:") || !strings.Contains(err.Error(), ": schema: schema 3 is newer") ||
			strings.Contains(err.Error(), "unknown key") {
			t.Errorf("newer nodes.toml %q: %v", nodes, err)
		}
	}
	for _, ok := range []string{"address = \"10.0.2.1\"\nschema = 2\n", "address = \"10.0.2.1\"\nschema = 1\n[dhcp]\nanswer_router_solicitations = true\n"} {
		if _, err := ParseServer("wwserver.toml", []byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}
