package config

import (
	"errors"
	"strings"
	"testing"
)

func TestBootMode(t *testing.T) {
	in := "[profiles.p]\nboot = \"twostage\"\n[nodes.a]\nimage = \"x\"\n[nodes.b]\nimage = \"x\"\nprofiles = [\"p\"]\n" +
		"[nodes.c]\nimage = \"x\"\nprofiles = [\"p\"]\nboot = \"initrd\"\n" +
		"[nodes.d]\nimage = \"x\"\nroot = \"initramfs\"\n[nodes.e]\nimage = \"x\"\nbootloader = \"grub\"\n"
	ns, err := ParseNodes("nodes.toml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": BootTwoStage, "b": BootTwoStage, "c": BootInitrd, "d": BootInitrd, "e": BootInitrd} {
		if got := ns.ByName[name].Boot; got != want {
			t.Errorf("node %s: boot %q, want %q", name, got, want)
		}
		if got := ns.ByName[name].TwoStage(); got != (want == BootTwoStage) {
			t.Errorf("node %s: TwoStage %v", name, got)
		}
	}
	if ns.ByName["b"].Public().Boot != BootTwoStage {
		t.Error("PublicNode lacks boot")
	}
	cases := []struct{ name, in, want string }{
		{"bad value on node", "[nodes.a]\nimage = \"x\"\nboot = \"disk\"\n",
			`nodes.toml:3: nodes.a.boot: must be "initrd" or "twostage", got "disk"`},
		{"bad value from profile", "[profiles.p]\n\nboot = \"2stage\"\n[nodes.a]\nimage = \"x\"\nprofiles = [\"p\"]\n",
			`nodes.toml:3: profiles.p.boot: must be "initrd" or "twostage", got "2stage"`},
		{"twostage needs tmpfs", "[nodes.a]\nimage = \"x\"\nroot = \"initramfs\"\nboot = \"twostage\"\n",
			`nodes.toml:4: nodes.a.boot: "twostage" unpacks the image into a tmpfs root`},
	}
	for _, c := range cases {
		_, err := ParseNodes("nodes.toml", []byte(c.in))
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

// TestBootDefaultServerGRUB: a node that sets neither boot nor bootloader
// boots single-stage when the server's default loader is GRUB; one that
// writes boot = "twostage" keeps it.
func TestBootDefaultServerGRUB(t *testing.T) {
	ns, err := ParseNodes("nodes.toml", []byte("[nodes.a]\nimage = \"x\"\n[nodes.b]\nimage = \"x\"\nboot = \"twostage\"\n"+
		"[nodes.c]\nimage = \"x\"\nbootloader = \"ipxe\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	applyServerLoader(&Server{Bootloader: LoaderGRUB}, ns)
	for name, want := range map[string]bool{"a": false, "b": true, "c": true} {
		if got := ns.ByName[name].TwoStage(); got != want {
			t.Errorf("node %s: TwoStage %v, want %v", name, got, want)
		}
	}
}
