package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVersionFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--version"}, &out, &errOut); code != 0 {
		t.Fatalf("wwserver --version: exit %d: %s", code, errOut.String())
	}
	// A test binary has no linked version: dev or dev-REVISION.
	if !strings.HasPrefix(out.String(), "wwserver version dev") {
		t.Fatalf("wwserver --version = %q", out.String())
	}
}

// TestGenDocs: __gendocs writes a man page per visible command and the
// three completions; the hidden command documents nothing of itself.
func TestGenDocs(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	if code := run([]string{genDocsCmd, dir}, &out, &errOut); code != 0 {
		t.Fatalf("__gendocs: exit %d: %s", code, errOut.String())
	}
	for _, f := range []string{"man8/wwserver.8", "man8/wwserver-serve.8", "man8/wwserver-node-import.8",
		"completions/wwserver.bash", "completions/_wwserver", "completions/wwserver.fish"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(data) == 0 {
			t.Errorf("%s: %v (%d bytes)", f, err, len(data))
		}
	}
	page, _ := os.ReadFile(filepath.Join(dir, "man8/wwserver-serve.8"))
	if !bytes.Contains(page, []byte(".SH NAME")) || !bytes.Contains(page, []byte("--root")) {
		t.Errorf("wwserver-serve.8 lacks NAME or --root:\n%.400s", page)
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "man8", "*"))
	for _, p := range pages {
		if strings.Contains(p, "gendocs") {
			t.Errorf("the hidden command got a man page: %s", p)
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(genDocsCmd)) {
			t.Errorf("%s mentions the hidden command", p)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "completions/wwserver.bash")); bytes.Contains(b, []byte(genDocsCmd)) {
		t.Errorf("the bash completion offers the hidden command")
	}
}
