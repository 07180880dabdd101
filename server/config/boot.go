package config

// defaultBoot is the boot mode of a node that sets none (nor do its
// profiles): two-stage for every loader (iPXE and GRUB, x86 and arm64),
// unless the root stays in the initramfs (two-stage unpacks into a tmpfs).
func defaultBoot(n *Node) string {
	if n.Root == RootInitramfs {
		return BootInitrd
	}
	return BootTwoStage
}

// checkBoot defaults and validates the merged boot mode of node n (key
// "nodes.NAME", written as r), blaming the node or profile entry that set
// the value, so the error's file:line is where the value is written.
// profileBoot returns a profile's boot key as written (nil: not set or no
// such profile).
func checkBoot(n *Node, key string, r *Entry, profileBoot func(profile string) *string, fail func(key, format string, a ...any)) {
	where := key + ".boot"
	if r.Boot == nil {
		for _, p := range r.Profiles { // the last profile setting it won the merge
			if profileBoot(p) != nil {
				where = "profiles." + p + ".boot"
			}
		}
	}
	if n.Boot == "" {
		n.Boot = defaultBoot(n)
	}
	switch n.Boot {
	case BootInitrd:
	case BootTwoStage:
		if n.Root == RootInitramfs {
			fail(where, "%q unpacks the image into a tmpfs root; the node's root must be %q, not %q",
				BootTwoStage, RootTmpfs, RootInitramfs)
		}
	default:
		fail(where, "must be %q or %q, got %q", BootInitrd, BootTwoStage, n.Boot)
	}
}
