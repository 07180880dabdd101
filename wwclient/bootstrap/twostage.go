package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wwcluster/ww/wwclient/nodeconf"
)

// ImageLoader fetches the image of a two-stage boot and unpacks it into
// dir (package stage2 is the real one). say prints a console line.
type ImageLoader interface {
	LoadImage(ctx context.Context, eff nodeconf.Effective, dir string, say func(format string, args ...any)) error
}

// DefaultImageTimeout bounds a two-stage image load.
const DefaultImageTimeout = time.Hour

// bootTwoStage is the boot when the kernel command line has wwimage=: the
// initramfs holds only the overlays and the network drivers. The image is
// fetched and unpacked straight into the tmpfs new root, the initramfs
// (overlays) is laid over it so the overlays win, and the boot goes on in
// the new root as a tmpfs boot does. SELinux comes after the switch (the
// policy is the image's): the policy is loaded and the tree labelled in
// place (setfiles when that fails).
func (b *Bootstrap) bootTwoStage(eff nodeconf.Effective) error {
	if b.Image == nil {
		return errors.New("two-stage boot (wwimage= on the kernel command line), but this wwclient has no image loader")
	}
	if eff.Root == nodeconf.RootInitramfs {
		b.say("warning: root %q ignored: a two-stage boot unpacks the image into a tmpfs root", eff.Root)
	}
	eff.Root = nodeconf.RootTmpfs
	if err := b.mountNewRoot(eff.TmpfsSize); err != nil {
		return err
	}
	timeout := b.ImageTimeout
	if timeout <= 0 {
		timeout = DefaultImageTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	b.say("two-stage boot: fetching image %s", eff.Image)
	var fail error
	if err := b.Image.LoadImage(ctx, eff, NewRoot, b.say); err != nil {
		fail = fmt.Errorf("two-stage boot: image %s: %w", eff.Image, err)
	} else if err := b.Sys.OverlayTree("/", NewRoot); err != nil {
		fail = fmt.Errorf("two-stage boot: lay the overlays over the image: %w", err)
	}
	if err := b.enterNewRoot(nil, fail); err != nil {
		return err
	}
	b.say("root: image and overlays in tmpfs in %s", time.Since(start).Round(100*time.Millisecond))

	sel := b.decideSELinux(eff) // the image's /etc/selinux/config, now at /
	loaded := false
	var label LabelFunc
	if sel.Load {
		var err error
		if loaded, err = b.loadPolicy(sel); err != nil {
			return err
		}
	}
	if loaded {
		label = b.labelInPlace(sel)
	}
	return b.finish(eff, sel, loaded, label)
}

// labelInPlace labels the root, /dev and /run with the policy's
// file_contexts; nil when that could not be done (finish then runs
// setfiles).
func (b *Bootstrap) labelInPlace(sel SELinuxDecision) LabelFunc {
	start := time.Now()
	label, err := b.Sys.FileContexts(sel.Type)
	if err != nil {
		b.say("warning: SELinux: %v; labelling with setfiles instead", err)
		return nil
	}
	if err := b.Sys.LabelTree("/", label); err != nil {
		b.say("warning: SELinux: %v; labelling with setfiles instead", err)
		return nil
	}
	for _, d := range []string{"/dev", "/run"} {
		if err := b.Sys.LabelTree(d, label); err != nil {
			b.say("warning: SELinux: %v", err)
		}
	}
	b.say("SELinux: labelled the root file system in %s", time.Since(start).Round(10*time.Millisecond))
	return label
}
