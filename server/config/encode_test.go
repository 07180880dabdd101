package config

import (
	"bytes"
	"strings"
	"testing"
)

func sp(s string) *string { return &s }
func bp(b bool) *bool     { return &b }

// roundTrip writes f and reads it back with DecodeNodesFile (the fast
// parser, or the TOML decoder for escapes) and with the TOML decoder
// itself; both must give entries SameEntry as f's.
func roundTrip(t *testing.T, f *File) (fast bool) {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteNodesFile(&buf, f); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := DecodeNodesFile(Source{Path: "x.toml", Data: buf.Bytes()})
	if err != nil {
		t.Fatalf("read back: %v\n%s", err, buf.String())
	}
	ref, ok := decodeTOML(buf.Bytes())
	if !ok {
		t.Fatalf("the TOML decoder refuses what WriteNodesFile wrote:\n%s", buf.String())
	}
	for _, back := range []*File{got, ref} {
		for _, kind := range []struct{ a, b map[string]*Entry }{{f.Profiles, back.Profiles}, {f.Nodes, back.Nodes}} {
			if len(kind.a) != len(kind.b) {
				t.Fatalf("%d entries written, %d read:\n%s", len(kind.a), len(kind.b), buf.String())
			}
			for name, e := range kind.a {
				if !SameEntry(e, kind.b[name]) {
					t.Fatalf("entry %q changed on the way:\nwritten %+v\nread    %+v\n%s", name, e, kind.b[name], buf.String())
				}
			}
		}
	}
	_, fast = fastParseNodes(buf.Bytes())
	return fast
}

func TestWriteNodesFileRoundTrip(t *testing.T) {
	plain := &File{
		Profiles: map[string]*Entry{"default": {Image: sp("debian"), KernelArgs: []string{"console=ttyS0", "quiet"},
			SystemOverlays: []string{"wwinit"}, RuntimeOverlays: []string{}}},
		Nodes: map[string]*Entry{
			"n1": {Profiles: []string{"default"}, Discoverable: bp(true), Tags: map[string]string{"rack": "r1", "odd key": "v"},
				Network: map[string]*NetDevEntry{"eth0": {HWAddr: sp("52:54:00:00:00:01"), IPAddr: sp("10.0.0.1"), Primary: bp(false)}, "eth1": nil}},
			"a.b":   {Image: sp("x"), Root: sp("initramfs"), AssetKey: sp(""), IPXETemplate: sp("t"), Kernel: sp("boot/vmlinuz")},
			"empty": {},
			"nil":   nil,
		},
	}
	if !roundTrip(t, plain) {
		t.Error("a file without escapes did not take the fast path")
	}
	odd := &File{Nodes: map[string]*Entry{
		"n1": {Image: sp(`quote " backslash \ tab` + "\t newline \n cr \r bell \x07 del \x7f é ☃"),
			Tags: map[string]string{"k\"ey": "v\\", "": "empty key"}, KernelArgs: []string{`a"b`, ""}},
	}}
	roundTrip(t, odd)
	if err := WriteNodesFile(&bytes.Buffer{}, &File{Nodes: map[string]*Entry{"n": {Image: sp("\xff")}}}); err == nil ||
		!strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("invalid UTF-8 written: %v", err)
	}
}

// FuzzWriteNodesFile: whatever the TOML decoder reads from a nodes file is
// written back by WriteNodesFile so that it reads the same.
func FuzzWriteNodesFile(f *testing.F) {
	f.Add([]byte(managedText(2)))
	f.Add([]byte(goodNodes))
	f.Add([]byte("[nodes.\"a\\tb\"]\nimage = \"\\u0001\\\"\"\n[nodes.\"a\\tb\".tags]\n\"\" = ''\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, ok := decodeTOML(data)
		if !ok {
			return
		}
		roundTrip(t, file)
	})
}
