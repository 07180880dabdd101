package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBootloader(t *testing.T) {
	in := "[profiles.sb]\nbootloader = \"grub\"\n[nodes.a]\nimage = \"x\"\n[nodes.b]\nimage = \"x\"\nprofiles = [\"sb\"]\n" +
		"[nodes.c]\nimage = \"x\"\nprofiles = [\"sb\"]\nbootloader = \"ipxe\"\n"
	ns, err := ParseNodes("nodes.toml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	def, err := ParseServer("wwserver.toml", []byte("address = \"10.0.2.1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	grubDefault, err := ParseServer("wwserver.toml", []byte("address = \"10.0.2.1\"\nbootloader = \"grub\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][2]string{
		"a": {LoaderIPXE, LoaderGRUB}, // unset: the server's default
		"b": {LoaderGRUB, LoaderGRUB}, // from its profile
		"c": {LoaderIPXE, LoaderIPXE}, // its own value wins over the profile's
	} {
		n := ns.ByName[name]
		if got := [2]string{def.LoaderFor(n), grubDefault.LoaderFor(n)}; got != want {
			t.Errorf("node %s: LoaderFor = %q, want %q", name, got, want)
		}
	}
	if def.LoaderFor(nil) != LoaderIPXE || grubDefault.LoaderFor(nil) != LoaderGRUB {
		t.Error("an unknown MAC does not get the server's default loader")
	}
	if ns.ByName["b"].Public().Bootloader != LoaderGRUB {
		t.Error("PublicNode lacks bootloader")
	}

	cases := []struct{ name, in, want string }{
		{"bad value on node", "[nodes.a]\nimage = \"x\"\nbootloader = \"pxelinux\"\n",
			`nodes.toml:3: nodes.a.bootloader: must be "ipxe" or "grub", got "pxelinux"`},
		{"bad value from profile", "[profiles.p]\n\nbootloader = \"GRUB\"\n[nodes.a]\nimage = \"x\"\nprofiles = [\"p\"]\n",
			`nodes.toml:3: profiles.p.bootloader: must be "ipxe" or "grub", got "GRUB"`},
	}
	for _, c := range cases {
		_, err := ParseNodes("nodes.toml", []byte(c.in))
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"address = \"10.0.2.1\"\n\nbootloader = \"shim\"\n", `wwserver.toml:3: bootloader: must be "ipxe" or "grub", got "shim"`},
		{"address = \"10.0.2.1\"\n[grub]\nshim = \"shimx64.efi\"\n", `wwserver.toml:3: grub.shim: "shimx64.efi": want an absolute path`},
		{"address = \"10.0.2.1\"\n[grub]\ngrub = \"x\"\n", `wwserver.toml:3: grub.grub: "x": want an absolute path`},
		{"address = \"10.0.2.1\"\n[grub]\nhttp = true\n", `wwserver.toml:3: grub.http: unknown key`},
	} {
		_, err := ParseServer("wwserver.toml", []byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.in, err, c.want)
		}
	}
}

// TestGRUBFiles: grub.shim and grub.grub are resolved at load (symlinks
// followed) and served as shimx64.efi and grubx64.efi; missing ones are
// GRUBFileProblems with file:line:key, not BootFileProblems (they matter
// only when a node boots with GRUB).
func TestGRUBFiles(t *testing.T) {
	dir := t.TempDir()
	shim := filepath.Join(dir, "shimx64.efi.signed")
	if err := os.WriteFile(shim, []byte("MZ shim"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "shim-link")
	if err := os.Symlink(shim, link); err != nil {
		t.Fatal(err)
	}
	tftpDir := t.TempDir()
	for _, f := range []string{"undionly.kpxe", "snponly.efi", "ipxe.efi"} {
		if err := os.WriteFile(filepath.Join(tftpDir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, ServerFile)
	conf := "address = \"10.0.2.1\"\n[tftp]\ndir = \"" + tftpDir + "\"\n[grub]\nshim = \"" + link + "\"\ngrub = \"" + filepath.Join(dir, "missing.efi") + "\"\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadServer(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := s.BootFile(ShimName); !ok || p != shim {
		t.Errorf("BootFile(%s) = %q, %v; want %s", ShimName, p, ok, shim)
	}
	if p, ok := s.BootFile("/" + ShimName); !ok || p != shim {
		t.Errorf("BootFile(/%s) = %q, %v", ShimName, p, ok)
	}
	if _, ok := s.BootFile(GRUBName); ok {
		t.Errorf("a missing grub.grub is served")
	}
	if len(s.BootFileProblems()) != 0 {
		t.Errorf("BootFileProblems: %v", s.BootFileProblems())
	}
	probs := s.GRUBFileProblems()
	if len(probs) != 1 || !strings.Contains(probs[0].Error(), path+":6: grub.grub:") || !strings.Contains(probs[0].Error(), "served as grubx64.efi") {
		t.Errorf("GRUBFileProblems = %v", probs)
	}
	if f := s.BootFiles(); f.Shim != ShimName {
		t.Errorf("BootFiles().Shim = %q", f.Shim)
	}
}

// TestTFTPAnticipate: an unset window is 8, or 1 as soon as anything boots
// with GRUB; a window written in wwserver.toml is kept.
func TestTFTPAnticipate(t *testing.T) {
	grubNodes, err := ParseNodes("nodes.toml", []byte("[profiles.p]\nbootloader = \"grub\"\n[nodes.a]\nimage = \"x\"\nprofiles = [\"p\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	ipxeNodes, err := ParseNodes("nodes.toml", []byte("[nodes.a]\nimage = \"x\"\nbootloader = \"ipxe\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !grubNodes.AnyGRUB || ipxeNodes.AnyGRUB {
		t.Fatalf("AnyGRUB: %v, %v", grubNodes.AnyGRUB, ipxeNodes.AnyGRUB)
	}
	for _, tc := range []struct {
		server string
		nodes  *Nodes
		grub   bool
		want   int
	}{
		{"", ipxeNodes, false, 8},
		{"", grubNodes, true, GRUBAnticipate},
		{"bootloader = \"grub\"\n", ipxeNodes, true, GRUBAnticipate},
		{"[tftp]\nanticipate = 0\n", grubNodes, true, GRUBAnticipate},
		{"[tftp]\nanticipate = 4\n", grubNodes, true, 4},
		{"[tftp]\nanticipate = 16\n", ipxeNodes, false, 16},
	} {
		srv, err := ParseServer("wwserver.toml", []byte("address = \"10.0.2.1\"\n"+tc.server))
		if err != nil {
			t.Fatal(err)
		}
		s := &Snapshot{Server: srv, Nodes: tc.nodes}
		if s.UsesGRUB() != tc.grub || s.TFTPAnticipate() != tc.want {
			t.Errorf("%q: UsesGRUB %v, TFTPAnticipate %d; want %v, %d", tc.server, s.UsesGRUB(), s.TFTPAnticipate(), tc.grub, tc.want)
		}
	}
}
