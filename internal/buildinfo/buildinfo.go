// Package buildinfo says which build a binary is, for --version.
package buildinfo

import "runtime/debug"

// Version is linked when set (make build and make packages link `git
// describe` with -ldflags "-X main.buildVersion=..."), else the module
// version or VCS revision the Go toolchain recorded, else "dev".
func Version(linked string) string {
	if linked != "" {
		return linked
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}
