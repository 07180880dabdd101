package selabel

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestLiteralPrefix(t *testing.T) {
	for expr, want := range map[string][2]string{
		"/etc/passwd":             {"/etc/passwd", ""},
		"/etc(/.*)?":              {"/etc", "(/.*)?"},
		`/etc/passwd[-\+]?`:       {"/etc/passwd", `[-\+]?`},
		"/usr/lib/ld-[^/]*":       {"/usr/lib/ld-", "[^/]*"},
		"/var/run/foo?":           {"/var/run/fo", "o?"},
		`/usr/lib/.*\.so`:         {"/usr/lib/", `.*\.so`},
		`/etc/ssh/sshd\.conf`:     {"/etc/ssh/sshd.conf", ""},
		`/etc/a\.b\+?`:            {"/etc/a.b", `\+?`},
		`/usr/bin/x\d`:            {"/usr/bin/x", `\d`},
		"/dev/tty[0-9]{1,2}":      {"/dev/tty", "[0-9]{1,2}"},
		"/home/x{2}":              {"/home/", "x{2}"},
		"/usr/share/doc/.*":       {"/usr/share/doc/", ".*"},
		"/usr/share/doc(/.*)?":    {"/usr/share/doc", "(/.*)?"},
		"/var/lib/systemd/.*/x":   {"/var/lib/systemd/", ".*/x"},
		"/var/cache/man(/.*)?/.x": {"/var/cache/man", "(/.*)?/.x"},
	} {
		if lit, rest := literalPrefix(expr); lit != want[0] || rest != want[1] {
			t.Errorf("literalPrefix(%q) = %q, %q; want %q, %q", expr, lit, rest, want[0], want[1])
		}
	}
}

func TestLookupOrderTypesAliases(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("file_contexts", `# comment
/.*	system_u:object_r:default_t:s0
/etc(/.*)?	system_u:object_r:etc_t:s0
/etc/shadow.*	--	system_u:object_r:shadow_t:s0
/etc/passwd	--	system_u:object_r:passwd_file_t:s0
/usr/lib/systemd/systemd	--	system_u:object_r:init_exec_t:s0
/usr/lib(/.*)?	system_u:object_r:lib_t:s0
/proc(/.*)?	<<none>>
`)
	write("file_contexts.local", "/etc/site(/.*)?	system_u:object_r:site_t:s0\n")
	write("file_contexts.subs_dist", "/lib /usr/lib\n/lib/systemd /usr/lib/systemd\n")
	c, err := LoadContexts(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		mode uint32
		want string
	}{
		{"/etc/passwd", ModeRegular, "system_u:object_r:passwd_file_t:s0"}, // exact beats the later regex
		{"/etc/passwd", ModeDir, "system_u:object_r:etc_t:s0"},             // type mismatch
		{"/etc/shadow-", ModeRegular, "system_u:object_r:shadow_t:s0"},
		{"/etc/site/x", ModeRegular, "system_u:object_r:site_t:s0"},               // .local wins
		{"/lib/systemd/systemd", ModeRegular, "system_u:object_r:init_exec_t:s0"}, // alias
		{"/lib/x86_64-linux-gnu/libc.so.6", ModeRegular, "system_u:object_r:lib_t:s0"},
		{"/library", ModeDir, "system_u:object_r:default_t:s0"}, // /lib alias needs a path boundary
		{"/proc/1", ModeDir, ""}, // <<none>>
	} {
		got, ok := c.Lookup(tc.path, tc.mode)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("Lookup(%s, %o) = %q, %v; want %q", tc.path, tc.mode, got, ok, tc.want)
		}
	}
	write("file_contexts", "/x\t-q\tbad\n")
	if _, err := LoadContexts(dir); err == nil || !strings.Contains(err.Error(), "file_contexts:1") {
		t.Fatalf("bad file type: %v", err)
	}
}

// TestLookupMatchesLibselinux compares Lookup with libselinux's own
// matchpathcon on every file of the Debian SELinux image
// (initramfs/debian-image.sh selinux; WW_SELINUX_IMAGE, default
// build/debian-selinux), run in that image with chroot.
func TestLookupMatchesLibselinux(t *testing.T) {
	img := os.Getenv("WW_SELINUX_IMAGE")
	if img == "" {
		img = "../../build/debian-selinux"
	}
	root := filepath.Join(img, "rootfs")
	fcdir := filepath.Join(root, "etc/selinux/default/contexts/files")
	if _, err := os.Stat(filepath.Join(root, "usr/sbin/matchpathcon")); err != nil || os.Geteuid() != 0 {
		t.Skipf("needs root and the SELinux image with matchpathcon (make test-selinux builds it and runs this): %v", err)
	}
	c, err := LoadContexts(fcdir)
	if err != nil {
		t.Fatal(err)
	}
	types := map[uint32]string{ModeRegular: "file", ModeDir: "dir", ModeSymlink: "lnk_file"}
	byType := map[uint32][]string{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(p[len(root):], "/")
		if rel == "/proc" || rel == "/sys" {
			return fs.SkipDir
		}
		var m uint32
		switch {
		case d.IsDir():
			m = ModeDir
		case d.Type()&fs.ModeSymlink != 0:
			m = ModeSymlink
		case d.Type().IsRegular():
			m = ModeRegular
		default:
			return nil
		}
		byType[m] = append(byType[m], rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n, diff := 0, 0
	for m, paths := range byType {
		for len(paths) > 0 {
			batch := paths[:min(len(paths), 500)]
			paths = paths[len(batch):]
			out, err := exec.Command("chroot", append([]string{root, "matchpathcon", "-n", "-m", types[m]}, batch...)...).Output()
			if err != nil {
				t.Fatalf("matchpathcon: %v", err)
			}
			want := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(want) != len(batch) {
				t.Fatalf("matchpathcon gave %d lines for %d paths", len(want), len(batch))
			}
			for i, p := range batch {
				n++
				got, _ := c.Lookup(p, m)
				if w := strings.TrimSpace(want[i]); got != w && !(got == "" && strings.Contains(w, "<<none>>")) {
					diff++
					if diff <= 20 {
						t.Errorf("%s (%s): %q, libselinux %q", p, types[m], got, w)
					}
				}
			}
		}
	}
	t.Logf("%d paths compared, %d differ", n, diff)
	if n < 1000 {
		t.Fatalf("only %d paths compared", n)
	}
}

// BenchmarkLookupImage labels every path of the Debian SELinux image (what
// the bootstrap's labelling copy asks), per path.
func BenchmarkLookupImage(b *testing.B) {
	img := os.Getenv("WW_SELINUX_IMAGE")
	if img == "" {
		img = "../../build/debian-selinux"
	}
	root := filepath.Join(img, "rootfs")
	var paths []string
	var modes []uint32
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		m := uint32(ModeRegular)
		if d.IsDir() {
			m = ModeDir
		} else if d.Type()&fs.ModeSymlink != 0 {
			m = ModeSymlink
		}
		paths = append(paths, "/"+strings.TrimPrefix(p[len(root):], "/"))
		modes = append(modes, m)
		return nil
	})
	if err != nil {
		b.Skipf("no SELinux image (make image-selinux): %v", err)
	}
	c, err := LoadContexts(filepath.Join(root, "etc/selinux/default/contexts/files"))
	if err != nil {
		b.Skip(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Lookup(paths[i%len(paths)], modes[i%len(paths)])
	}
}
