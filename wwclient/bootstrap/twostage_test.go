package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wwcluster/ww/wwclient/nodeconf"
)

func (f *fakeSys) OverlayTree(src, dst string) error { return f.act("overlay " + src + " " + dst) }

// fakeLoader records the image load.
type fakeLoader struct {
	f   *fakeSys
	eff nodeconf.Effective
	err error
}

func (l *fakeLoader) LoadImage(ctx context.Context, eff nodeconf.Effective, dir string, say func(string, ...any)) error {
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("no deadline on the image load")
	}
	l.eff = eff
	say("image: 50%% (fake)")
	if err := l.f.act("load image " + eff.Image + " into " + dir); err != nil {
		return err
	}
	return l.err
}

const testDigest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func bootTwoStage(t *testing.T, f *fakeSys, l *fakeLoader) string {
	t.Helper()
	var out bytes.Buffer
	b := &Bootstrap{Sys: f, Console: &out, Version: "test", Args: []string{"/init"}, Env: []string{"HOME=/"}}
	if l != nil {
		b.Image = l
	}
	b.Run()
	return out.String()
}

func TestBootTwoStageSequence(t *testing.T) {
	f := newFake()
	f.files["/proc/cmdline"] = "console=ttyS0 wwid=52:54:00:00:00:01 wwserver=10.0.2.1:9873 wwimage=" + testDigest + " wwroot=tmpfs"
	l := &fakeLoader{f: f}
	console := bootTwoStage(t, f, l)
	expectCalls(t, f.calls, apiMountCalls, []string{
		"mount tmpfs /newroot - mode=0755",
		"load image " + testDigest + " into /newroot",
		"overlay / /newroot",
		"move /proc /newroot/proc",
		"move /sys /newroot/sys",
		"move /dev /newroot/dev",
		"move /run /newroot/run",
		"chdir /newroot",
		"remove /",
		"move . /",
		"chroot .",
		"chdir /",
		"hostname n001",
		"start /usr/sbin/wwclient log=/dev/console",
		"exec /sbin/init [/sbin/init]",
		"exec /bin/sh [/bin/sh]",
		"sleep 30s",
		"reboot",
	})
	if l.eff.WWID != "52:54:00:00:00:01" || l.eff.Server != "10.0.2.1:9873" {
		t.Errorf("loader got %+v", l.eff)
	}
	for _, want := range []string{"wwinit: two-stage boot: fetching image " + testDigest, "wwinit: image: 50% (fake)", "wwinit: root: image and overlays in tmpfs"} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
}

// TestBootTwoStageSELinux: the image's policy is loaded after the switch
// and the tree labelled in place.
func TestBootTwoStageSELinux(t *testing.T) {
	f := newFake()
	f.files["/proc/cmdline"] = "wwid=52:54:00:00:00:01 wwserver=10.0.2.1:9873 selinux=1 wwimage=" + testDigest
	f.files[SELinuxConfig] = "SELINUX=enforcing\nSELINUXTYPE=targeted\n"
	f.exists[LoadPolicy] = true
	bootTwoStage(t, f, &fakeLoader{f: f})
	got := strings.Join(f.calls, "\n")
	for _, want := range []string{"chroot .\nchdir /\nrun /usr/sbin/load_policy -i\nfile_contexts targeted\nlabel /\nlabel /dev\nlabel /run\nhostname n001"} {
		if !strings.Contains(got, want) {
			t.Fatalf("calls:\n%s\nwant the sequence:\n%s", got, want)
		}
	}
	if strings.Contains(got, "setfiles") {
		t.Error("setfiles ran after an in-place labelling")
	}
}

func TestBootTwoStageFailures(t *testing.T) {
	f := newFake()
	f.files["/proc/cmdline"] = "wwid=52:54:00:00:00:01 wwserver=10.0.2.1:9873 wwimage=" + testDigest
	l := &fakeLoader{f: f, err: errors.New("image does not fit in memory: needs 9 GiB")}
	console := bootTwoStage(t, f, l)
	if !strings.Contains(console, "wwinit: ERROR: two-stage boot: image "+testDigest+": image does not fit in memory") {
		t.Errorf("console:\n%s", console)
	}
	got := strings.Join(f.calls, "\n")
	if !strings.Contains(got, "umount /newroot") || strings.Contains(got, "overlay") || strings.Contains(got, "exec /sbin/init") {
		t.Errorf("calls after a failed load:\n%s", got)
	}

	// No loader in this build: a clear error.
	f = newFake()
	f.files["/proc/cmdline"] = "wwid=52:54:00:00:00:01 wwimage=" + testDigest
	if console := bootTwoStage(t, f, nil); !strings.Contains(console, "no image loader") {
		t.Errorf("console:\n%s", console)
	}
}

// TestTmpfsSize: wwtmpfs_size= becomes the tmpfs root's size= option
// (two-stage and single-stage); an invalid value is ignored with a console
// warning.
func TestTmpfsSize(t *testing.T) {
	f := newFake()
	f.files["/proc/cmdline"] = "wwid=52:54:00:00:00:01 wwserver=10.0.2.1:9873 wwtmpfs_size=90% wwimage=" + testDigest
	bootTwoStage(t, f, &fakeLoader{f: f})
	if got := strings.Join(f.calls, "\n"); !strings.Contains(got, "mount tmpfs /newroot - mode=0755,size=90%\n") {
		t.Errorf("two-stage: calls:\n%s", got)
	}
	f = newFake()
	f.files["/proc/cmdline"] = "wwid=52:54:00:00:00:01 wwserver=10.0.2.1:9873 wwtmpfs_size=12G wwroot=tmpfs"
	bootTwoStage(t, f, nil)
	if got := strings.Join(f.calls, "\n"); !strings.Contains(got, "mount tmpfs /newroot - mode=0755,size=12G\n") {
		t.Errorf("single-stage: calls:\n%s", got)
	}
	f = newFake()
	f.files["/proc/cmdline"] = "wwid=52:54:00:00:00:01 wwserver=10.0.2.1:9873 wwtmpfs_size=lots,nr_inodes=1 wwimage=" + testDigest
	console := bootTwoStage(t, f, &fakeLoader{f: f})
	if got := strings.Join(f.calls, "\n"); !strings.Contains(got, "mount tmpfs /newroot - mode=0755\n") {
		t.Errorf("invalid size: calls:\n%s", got)
	}
	if !strings.Contains(console, `warning: wwtmpfs_size="lots,nr_inodes=1" ignored`) {
		t.Errorf("console:\n%s", console)
	}
}
