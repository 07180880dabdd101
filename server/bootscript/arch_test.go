package bootscript

import (
	"strings"
	"testing"
)

// TestArchCheck: with the image's architecture known, the iPXE script and
// the GRUB config first check the loader's own (${buildarch}, $grub_cpu)
// and, on another, say so, report it to this server and exit; without it
// (unknown) there is no check. The render cache keeps both.
func TestArchCheck(t *testing.T) {
	snap := snapshot(t, false)
	n := snap.Nodes.ByMAC[macN002]
	ipxe, err := NewIPXE(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	g := newGRUB(t)
	report := "/wrongarch/"
	for _, tc := range []struct {
		name, arch string
		fn         func(Request) ([]byte, string, error)
		want       []string
	}{
		{"ipxe arm64", "arm64", ipxe.Script, []string{
			"iseq ${buildarch} arm64 && goto ww_arch_ok ||\necho wwserver: node n002 cannot boot on this machine:\n",
			"is arm64, this iPXE runs on ${buildarch}",
			"imgfetch --name wrongarch http://10.0.2.1:9873/ipxe/" + macN002 + report + "${buildarch} ||",
			"goto ww_exit\n:ww_arch_ok\necho wwserver: booting n002"}},
		{"ipxe amd64", "amd64", ipxe.Script, []string{
			"iseq ${buildarch} x86_64 && goto ww_arch_ok ||\niseq ${buildarch} i386 && goto ww_arch_ok ||\necho"}},
		{"grub arm64", "arm64", g.Script, []string{
			`if [ "$grub_cpu" != 'arm64' ]; then`,
			`is arm64, this GRUB runs on '"$grub_cpu"`,
			`source '(tftp,10.0.2.1)/grub/` + macN002 + report + `'"$grub_cpu"`,
			"exit 1\nfi\necho 'wwserver: booting n002"}},
		{"grub amd64", "amd64", g.Script, []string{`if [ "$grub_cpu" != 'x86_64' ]; then`}},
	} {
		script, _, err := tc.fn(Request{Snap: snap, Node: n, MAC: macN002, Servers: []string{self}, ImageArch: tc.arch})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(script), w) {
				t.Errorf("%s: script lacks %q:\n%s", tc.name, w, script)
			}
		}
		plain, _, err := tc.fn(Request{Snap: snap, Node: n, MAC: macN002, Servers: []string{self}})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(plain), "buildarch") || strings.Contains(string(plain), "grub_cpu") || strings.Contains(string(plain), report) {
			t.Errorf("%s: unknown architecture, but the script checks one:\n%s", tc.name, plain)
		}
	}
}

func TestWrongArchSent(t *testing.T) {
	for in, want := range map[string]string{
		"x86_64": "WRONG_ARCH:x86_64", "arm64": "WRONG_ARCH:arm64", "": "WRONG_ARCH:?",
		"x86 64": "WRONG_ARCH:?", "aaaaaaaaaaaaaaaaa": "WRONG_ARCH:?", "../x": "WRONG_ARCH:?",
	} {
		if got := WrongArchSent(in); got != want {
			t.Errorf("WrongArchSent(%q) = %q, want %q", in, got, want)
		}
	}
}
