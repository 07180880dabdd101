package artifact

import "strings"

// Template functions for account files (passwd, group, shadow, gshadow):
// the image's own files are the base and the cluster's accounts are merged
// in by name, as Warewulf's syncuser does.

// mergeLines merges colon-separated account files by their first field:
// base's lines in order, each replaced by the last line of the same name in
// extra (left to right), then extra's new names in order of appearance.
// Blank lines and # comments of extra are dropped; every line ends in "\n".
func mergeLines(base string, extra ...string) string {
	type line struct{ name, text string }
	var out []line
	at := map[string]int{}
	add := func(text string, fromExtra bool) {
		t := strings.TrimRight(text, "\r")
		if strings.TrimSpace(t) == "" || strings.HasPrefix(strings.TrimSpace(t), "#") {
			if !fromExtra && t != "" {
				out = append(out, line{text: t}) // keep the image's own comments
			}
			return
		}
		name, _, _ := strings.Cut(t, ":")
		if i, ok := at[name]; ok {
			out[i].text = t
			return
		}
		at[name] = len(out)
		out = append(out, line{name: name, text: t})
	}
	for _, l := range strings.Split(base, "\n") {
		add(l, false)
	}
	for _, e := range extra {
		for _, l := range strings.Split(e, "\n") {
			add(l, true)
		}
	}
	var b strings.Builder
	for _, l := range out {
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	return b.String()
}

// lockMissing returns shadow (a shadow or gshadow file) with a locked entry
// added for every account of accounts (a passwd or group file) that has
// none, so that the two stay consistent: "name:*:::::::" for a passwd entry,
// "name:!::" for a group entry.
func lockMissing(accounts, shadow string) string {
	have := map[string]bool{}
	for _, l := range strings.Split(shadow, "\n") {
		if name, _, ok := strings.Cut(l, ":"); ok {
			have[name] = true
		}
	}
	var b strings.Builder
	b.WriteString(shadow)
	if shadow != "" && !strings.HasSuffix(shadow, "\n") {
		b.WriteByte('\n')
	}
	for _, l := range strings.Split(accounts, "\n") {
		fields := strings.Split(strings.TrimRight(l, "\r"), ":")
		name := fields[0]
		if name == "" || strings.HasPrefix(name, "#") || have[name] {
			continue
		}
		have[name] = true
		if len(fields) == 4 { // group: name:x:gid:members
			b.WriteString(name + ":!::" + fields[3] + "\n")
		} else {
			b.WriteString(name + ":*:::::::\n")
		}
	}
	return b.String()
}
