package main

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// testdata/node.ipxe and unknown.ipxe are `wwserver render ipxe` output
// (the built-in templates) for a node and for an unknown MAC.

func TestParseScriptNode(t *testing.T) {
	b, err := os.ReadFile("testdata/node.ipxe")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseScript(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []download{
		{Command: "kernel", Name: "kernel", URL: "http://10.100.0.1:9873/kernel/52:54:01:00:00:01", Stage: stageKernel},
		{Command: "initrd", Name: "image.img.gz", URL: "http://10.100.0.1:9873/image/52:54:01:00:00:01", Stage: stageImage},
		{Command: "initrd", Name: "system.img.gz", URL: "http://10.100.0.1:9873/overlay/system/52:54:01:00:00:01", Stage: stageSystem},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d downloads %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("download %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseScriptUnknownNodeBootsNothing(t *testing.T) {
	b, err := os.ReadFile("testdata/unknown.ipxe")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseScript(b); !errors.Is(err, errNoKernel) {
		t.Fatalf("err = %v, want errNoKernel", err)
	}
}

func TestParseScriptCases(t *testing.T) {
	cases := []struct {
		name, script string
		urls         []string // want these URLs in order; nil: want an error
		stages       []string
	}{
		{"not ipxe", "kernel http://s/kernel/x\n", nil, nil},
		{"retry loop counted once", "#!ipxe\n:a\nkernel http://s/kernel/x || goto a\nkernel http://s/kernel/x\nboot\n",
			[]string{"http://s/kernel/x"}, []string{stageKernel}},
		{"name= form, runtime overlay and other file", "#!ipxe\nkernel --name=k http://s/kernel/m\ninitrd -n r http://s/overlay/runtime/m\nimgfetch http://s/extra.bin\n",
			[]string{"http://s/kernel/m", "http://s/overlay/runtime/m", "http://s/extra.bin"}, []string{stageKernel, stageRuntimeBoot, stageFile}},
		{"fallback server for the same name counted once", "#!ipxe\n:k\nkernel --name kernel http://a/kernel/m && goto k_ok ||\nkernel --name kernel http://b/kernel/m && goto k_ok ||\ngoto k\n:k_ok\n",
			[]string{"http://a/kernel/m"}, []string{stageKernel}},
		{"chain counts as booting", "#!ipxe\nchain http://s/other.ipxe\n", []string{"http://s/other.ipxe"}, []string{stageFile}},
		{"bad scheme", "#!ipxe\nkernel ftp://s/kernel\n", nil, nil},
		{"comments and echo ignored", "#!ipxe\n# kernel http://s/kernel/no\necho kernel http://s/kernel/no\n", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseScript([]byte(c.script))
			if c.urls == nil {
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var urls, stages []string
			for _, d := range got {
				urls, stages = append(urls, d.URL), append(stages, d.Stage)
			}
			if strings.Join(urls, " ") != strings.Join(c.urls, " ") || strings.Join(stages, " ") != strings.Join(c.stages, " ") {
				t.Errorf("urls %v stages %v, want %v %v", urls, stages, c.urls, c.stages)
			}
		})
	}
}

func TestParseScriptTooLong(t *testing.T) {
	long := "#!ipxe\necho " + strings.Repeat("x", maxScript+1) + "\nkernel http://s/kernel/x\n"
	if _, err := parseScript([]byte(long)); err == nil {
		t.Fatal("a line longer than the script limit parsed")
	}
}

// A two-stage script passes wwimage= on its boot line: it belongs to the
// kernel download, and the network drivers count as modules.
func TestParseScriptTwoStageDigest(t *testing.T) {
	const digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	script := "#!ipxe\nkernel --name kernel http://s/kernel/m && goto k_ok ||\n" +
		"initrd --name modules.img.gz http://s/modules/m && goto m_ok ||\n" +
		"iseq ${buildarch} x86_64 && goto ww_arch_ok ||\nimgfetch --name wrongarch http://s/ipxe/m/wrongarch/${buildarch} ||\n:ww_arch_ok\n" +
		"boot kernel initrd=modules.img.gz console=ttyS0 wwserver=http://s wwimage=" + digest + " wwid=m || goto boot_failed\n"
	got, err := parseScript([]byte(script))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ImageDigest != digest || got[1].ImageDigest != "" || got[1].Stage != stageModules {
		t.Fatalf("downloads %+v: want kernel with wwimage=%s, then modules", got, digest)
	}
	got, err = parseScript([]byte("#!ipxe\nkernel http://s/kernel/m console=ttyS0\nboot\n"))
	if err != nil || got[0].ImageDigest != "" {
		t.Fatalf("single-stage: %+v, %v: want no digest", got, err)
	}
}
