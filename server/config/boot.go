package config

// checkBoot defaults and validates the merged boot mode of node n (key
// "nodes.NAME", written as r), blaming the node or profile entry that set
// the value, so the error's file:line is where the value is written.
func checkBoot(n *Node, key string, r *Entry, profiles map[string]*Entry, fail func(key, format string, a ...any) error) error {
	where := key + ".boot"
	if r.Boot == nil {
		for _, p := range r.Profiles { // the last profile setting it won the merge
			if pr := profiles[p]; pr != nil && pr.Boot != nil {
				where = "profiles." + p + ".boot"
			}
		}
	}
	if n.Boot == "" {
		n.Boot = BootInitrd
	}
	switch n.Boot {
	case BootInitrd:
		return nil
	case BootTwoStage:
		if n.Root == RootInitramfs {
			return fail(where, "%q unpacks the image into a tmpfs root; the node's root must be %q, not %q",
				BootTwoStage, RootTmpfs, RootInitramfs)
		}
		return nil
	}
	return fail(where, "must be %q or %q, got %q", BootInitrd, BootTwoStage, n.Boot)
}
