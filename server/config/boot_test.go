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
	for name, want := range map[string]string{"a": BootTwoStage, "b": BootTwoStage, "c": BootInitrd, "d": BootInitrd, "e": BootTwoStage} {
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

// TestBootDefaultGRUB: a node that sets no boot mode boots two-stage
// whatever its loader; root = "initramfs" keeps single-stage; a written
// boot = "initrd" is kept.
func TestBootDefaultGRUB(t *testing.T) {
	ns, err := ParseNodes("nodes.toml", []byte("[nodes.a]\nimage = \"x\"\nbootloader = \"grub\"\n"+
		"[nodes.b]\nimage = \"x\"\nroot = \"initramfs\"\n[nodes.c]\nimage = \"x\"\nbootloader = \"grub\"\nboot = \"initrd\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"a": true, "b": false, "c": false} {
		if got := ns.ByName[name].TwoStage(); got != want {
			t.Errorf("node %s: TwoStage %v, want %v", name, got, want)
		}
	}
}
