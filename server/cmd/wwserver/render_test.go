package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// initTree writes a fresh tree for CLI tests.
func initTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	var out bytes.Buffer
	if code := run([]string{"init", dir, "--wwclient", fakeWWClient(t), "--address", "10.0.2.1"}, &out, &out); code != 0 {
		t.Fatalf("init: %s", out.String())
	}
	return dir
}

func TestCheck(t *testing.T) {
	dir := initTree(t)
	nodes := filepath.Join(dir, "nodes.toml")
	good, _ := os.ReadFile(nodes)

	// Syntax-level error: file:line: key: reason, exit 1.
	bad := strings.Replace(string(good), `hwaddr = "52:54:00:00:00:02"`, `hwaddr = "52:54:00:00:00"`, 1)
	if err := os.WriteFile(nodes, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run([]string{"check", "--root", dir}, &out, &out); code != 1 {
		t.Errorf("check exit %d", code)
	}
	if !strings.Contains(out.String(), "nodes.toml:") || !strings.Contains(out.String(), "nodes.n002.network.eth0.hwaddr") {
		t.Errorf("check output: %s", out.String())
	}

	// References to things that do not exist.
	ref := strings.Replace(string(good), `ipxe_template = ""`, `ipxe_template = "fancy"`, 1)
	ref = strings.Replace(ref, `runtime_overlays = ["generic"]`, `runtime_overlays = ["generic", "missing"]`, 1)
	if err := os.WriteFile(nodes, []byte(ref), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"check", "--root", dir}, &out, &out); code != 1 {
		t.Errorf("check exit %d", code)
	}
	for _, want := range []string{`overlay "missing"`, `iPXE template "fancy": no file ipxe/fancy.ipxe`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q: %s", want, out.String())
		}
	}
	// A broken template is reported with its parse error.
	if err := os.WriteFile(filepath.Join(dir, "ipxe", "fancy.ipxe"), []byte("#!ipxe\n{{.Nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	run([]string{"check", "--root", dir}, &out, &out)
	if !strings.Contains(out.String(), "fancy.ipxe") {
		t.Errorf("template error not reported: %s", out.String())
	}
}

func TestRenderAndNodes(t *testing.T) {
	dir := initTree(t)
	var out, errOut bytes.Buffer
	if code := run([]string{"render", "ipxe", "n001", "--root", dir}, &out, &errOut); code != 0 {
		t.Fatalf("render ipxe: %s", errOut.String())
	}
	if !strings.HasPrefix(out.String(), "#!ipxe") || !strings.Contains(out.String(), "http://10.0.2.1:9873/kernel/52:54:00:00:00:01") {
		t.Errorf("render ipxe:\n%s", out.String())
	}
	byMAC := out.String()
	out.Reset()
	run([]string{"render", "ipxe", "52-54-00-00-00-01", "--root", dir}, &out, &errOut)
	if out.String() != byMAC {
		t.Error("render by MAC differs from render by name")
	}
	out.Reset()
	errOut.Reset()
	run([]string{"render", "ipxe", "52:54:00:00:00:99", "--root", dir}, &out, &errOut)
	if !strings.Contains(out.String(), "not a known node") || !strings.Contains(errOut.String(), "no node has MAC") {
		t.Errorf("render unknown MAC: %s / %s", out.String(), errOut.String())
	}
	out.Reset()
	if code := run([]string{"render", "ipxe", "nosuchnode", "--root", dir}, &out, &out); code == 0 {
		t.Error("render of an unknown node succeeded")
	}
	out.Reset()
	if code := run([]string{"render", "overlay", "n002", "wwinit", "--root", dir}, &out, &out); code != 0 {
		t.Fatalf("render overlay: %s", out.String())
	}
	if !strings.Contains(out.String(), "n002") {
		t.Errorf("render overlay:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"render", "overlay", "n002", "nope", "--root", dir}, &out, &out); code == 0 {
		t.Error("render of a missing overlay succeeded")
	}
	out.Reset()
	run([]string{"nodes", "--root", dir}, &out, &out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[2], "10.0.2.12") {
		t.Errorf("nodes:\n%s", out.String())
	}
}

func TestLogFlags(t *testing.T) {
	for _, c := range []struct {
		format, level string
		ok            bool
	}{{"text", "info", true}, {"json", "debug", true}, {"JSON", "warn", true}, {"xml", "info", false}, {"text", "loud", false}} {
		_, err := (&logFlags{format: c.format, level: c.level}).logger(&bytes.Buffer{})
		if (err == nil) != c.ok {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
