package image

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestListArch: `image list` shows each image's architecture: its
// kernel's (an arm64 Image's magic), else the import source's (image.json
// architecture), else "?".
func TestListArch(t *testing.T) {
	tree := t.TempDir()
	mk := func(name string, kernel []byte, meta *Meta) {
		boot := filepath.Join(tree, "images", name, "rootfs", "boot")
		if err := os.MkdirAll(boot, 0o755); err != nil {
			t.Fatal(err)
		}
		if kernel != nil {
			if err := os.WriteFile(filepath.Join(boot, "vmlinuz-6.1.0-1-"+name), kernel, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if meta != nil {
			data, _ := json.Marshal(meta)
			if err := os.WriteFile(filepath.Join(tree, "images", name, MetaFile), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	arm := make([]byte, 0x100)
	copy(arm[0x38:], "ARM\x64")
	x86 := make([]byte, 0x300)
	copy(x86[0x202:], "HdrS")
	mk("a", arm, &Meta{Source: "s", Architecture: "amd64"}) // the kernel wins
	mk("b", x86, nil)
	mk("c", []byte("\x1f\x8b compressed"), &Meta{Source: "s", Architecture: "arm64"})
	mk("d", nil, nil)
	infos, err := List(tree, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, i := range infos {
		got[i.Name] = i.Arch
	}
	want := map[string]string{"a": "arm64", "b": "amd64", "c": "arm64", "d": ""}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("image %s: arch %q, want %q", k, got[k], v)
		}
	}
	var buf bytes.Buffer
	if err := WriteList(&buf, infos); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(buf.String(), "\n")
	if !strings.HasPrefix(lines[0], "NAME  ARCH ") || !strings.HasPrefix(lines[1], "a     arm64") || !strings.HasPrefix(lines[4], "d     ?") {
		t.Errorf("table:\n%s", buf.String())
	}
}
