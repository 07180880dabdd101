package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestTreeOperand: every command whose only operand is the served tree
// takes it as DIR or as --root DIR with the same result; both at once must
// agree; init takes --root too; a tree given as an operand to a command
// with other operands is refused with a hint to use --root.
func TestTreeOperand(t *testing.T) {
	dir := initTree(t)
	runOut := func(args ...string) (int, string) {
		var out bytes.Buffer
		code := run(args, &out, &out)
		return code, out.String()
	}
	for _, cmd := range [][]string{{"check"}, {"nodes"}, {"image", "list"}, {"profile", "list"}} {
		codeFlag, outFlag := runOut(append(append([]string{}, cmd...), "--root", dir)...)
		codeArg, outArg := runOut(append(append([]string{}, cmd...), dir)...)
		if codeFlag != codeArg || outFlag != outArg {
			t.Errorf("%v --root DIR: exit %d\n%s\n%v DIR: exit %d\n%s", cmd, codeFlag, outFlag, cmd, codeArg, outArg)
		}
		if strings.Contains(outArg, "unknown command") || strings.Contains(outArg, "accepts") {
			t.Errorf("%v DIR refused: %s", cmd, outArg)
		}
		if code, out := runOut(append(append([]string{}, cmd...), dir, "--root", dir)...); code != codeFlag {
			t.Errorf("%v DIR --root DIR (the same): exit %d: %s", cmd, code, out)
		}
		if code, out := runOut(append(append([]string{}, cmd...), dir, "--root", t.TempDir())...); code == 0 || !strings.Contains(out, "two served trees") {
			t.Errorf("%v DIR --root OTHER: exit %d: %s", cmd, code, out)
		}
	}
	if code, out := runOut("nodes", dir); code != 0 || !strings.Contains(out, "n001") {
		t.Errorf("nodes DIR: exit %d: %s", code, out)
	}

	// init: DIR or --root DIR, one of them required.
	viaFlag := filepath.Join(t.TempDir(), "tree")
	if code, out := runOut("init", "--root", viaFlag, "--wwclient", fakeWWClient(t), "--address", "10.0.2.1"); code != 0 || !isServedTree(viaFlag) {
		t.Errorf("init --root DIR: exit %d: %s", code, out)
	} else if !strings.Contains(out, "wwserver check "+viaFlag) {
		t.Errorf("init's next steps do not use the DIR operand: %s", out)
	}
	if code, out := runOut("init", "--wwclient", fakeWWClient(t)); code == 0 || !strings.Contains(out, "init DIR") {
		t.Errorf("init without a directory: exit %d: %s", code, out)
	}

	// Commands with other operands: the tree goes in --root; a tree given
	// as an operand gets that hint.
	for _, args := range [][]string{
		{"node", "add", "c1", dir},
		{"render", "ipxe", "n001", dir},
		{"status", dir},
	} {
		code, out := runOut(args...)
		if code == 0 || !strings.Contains(out, "--root "+dir) {
			t.Errorf("%v: exit %d: %s", args, code, out)
		}
	}
}
