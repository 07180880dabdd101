package config

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
		n.Boot = BootInitrd
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
