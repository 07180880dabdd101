package lab

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestInitrdRoundTrip(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc/init.d"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "boot"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc/inittab"), []byte("::sysinit:/etc/init.d/rcS\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "etc/init.d/rcS"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	must(os.WriteFile(filepath.Join(root, "boot/vmlinuz-1"), []byte("kernel"), 0o644))
	must(os.WriteFile(filepath.Join(root, "bin/busybox"), bytes.Repeat([]byte{1, 2, 3}, 1001), 0o755))
	must(os.Symlink("/bin/busybox", filepath.Join(root, "bin/sh")))

	out := filepath.Join(t.TempDir(), "initrd.gz")
	must(WriteInitrd(out, root, map[string][]byte{"init": CheckInit("x")}))
	f, err := os.Open(out)
	must(err)
	defer f.Close()
	files, err := ReadNewc(f)
	must(err)
	want := map[string][]byte{
		"etc/inittab":    []byte("::sysinit:/etc/init.d/rcS\n"),
		"etc/init.d/rcS": []byte("#!/bin/sh\necho hi\n"),
		"bin/busybox":    bytes.Repeat([]byte{1, 2, 3}, 1001),
		"init":           CheckInit("x"),
	}
	if !reflect.DeepEqual(files, want) {
		var got []string
		for k := range files {
			got = append(got, k)
		}
		t.Fatalf("files = %v", got)
	}
}

func TestVersionLess(t *testing.T) {
	if !versionLess("boot/vmlinuz-6.1.0-9-amd64", "boot/vmlinuz-6.1.0-28-amd64") {
		t.Error("6.1.0-9 should sort before 6.1.0-28")
	}
	if versionLess("vmlinuz-6.10.0", "vmlinuz-6.9.0") {
		t.Error("6.10 should sort after 6.9")
	}
	d := t.TempDir()
	for _, v := range []string{"6.1.0-9-amd64", "6.1.0-28-amd64", "5.10.0-1-amd64"} {
		if err := os.MkdirAll(filepath.Join(d, "boot"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "boot", "vmlinuz-"+v), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k, err := NewestKernel(d)
	if err != nil || !strings.HasSuffix(k, "vmlinuz-6.1.0-28-amd64") {
		t.Fatalf("NewestKernel = %q, %v", k, err)
	}
}

func TestLabNode(t *testing.T) {
	n := LabNode(2)
	if n.Name != "n002" || n.MAC != "52:54:00:99:00:02" || n.IP != "10.99.0.12" {
		t.Fatalf("LabNode(2) = %+v", n)
	}
}

func TestParseStatus(t *testing.T) {
	data := []byte(`{"now":100,"update_interval_seconds":5,
	 "nodes":[{"name":"n001","mac":"52:54:00:99:00:01","ipaddr":"10.99.0.11","stage":"RUNTIME_OVERLAY","sent":"__RUNTIME__.img.gz","last_seen":99,
	   "heartbeat":{"version":"dev","uptime_seconds":12,"boot_id":"b","runtime_etag":"\"e\""}}],
	 "unknown":[{"name":"52:54:00:99:ee:01","mac":"52:54:00:99:ee:01","stage":"IPXE","last_seen":98,"heartbeat":null}]}`)
	s, err := ParseStatus(data)
	if err != nil {
		t.Fatal(err)
	}
	n, ok := s.Node("n001")
	if !ok || n.Stage != "RUNTIME_OVERLAY" || n.Heartbeat == nil || n.Heartbeat.UptimeSeconds != 12 {
		t.Fatalf("node = %+v", n)
	}
	if u, ok := s.UnknownMAC("52-54-00-99-EE-01"); !ok || u.Stage != "IPXE" {
		t.Fatalf("unknown = %+v, %v", u, ok)
	}
	if _, err := ParseStatus([]byte("not json")); err == nil {
		t.Fatal("want an error")
	}
}

func TestShellQuote(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want string
	}{
		{[]string{"ip", "netns", "exec", "wwlab-12-1", "/srv/bin/wwserver", "status", "--server", "http://10.99.0.1:9873"},
			"ip netns exec wwlab-12-1 /srv/bin/wwserver status --server http://10.99.0.1:9873"},
		{[]string{"/my dir/wwserver", "it's", ""}, `'/my dir/wwserver' 'it'\''s' ''`},
	} {
		if got := ShellQuote(c.argv); got != c.want {
			t.Errorf("ShellQuote(%q) = %s, want %s", c.argv, got, c.want)
		}
	}
}

// TestStatusCommand: the command the lab prints runs the status client in
// the lab's namespace against the lab's server, with the binary it serves.
func TestStatusCommand(t *testing.T) {
	l := &Lab{NS: "wwlab-1-1", ServerIP: DefaultServerIP, Port: DefaultPort, Paths: Paths{Wwserver: "/repo/bin/wwserver"}}
	want := []string{"ip", "netns", "exec", "wwlab-1-1", "/repo/bin/wwserver", "status", "--server", "http://10.99.0.1:9873"}
	if got := l.StatusCommand(); !reflect.DeepEqual(got, want) {
		t.Errorf("StatusCommand() = %q, want %q", got, want)
	}
}

// TestInitKernelArgs: the lab keeps what wwserver init wrote except its
// consoles (ttyS0 must be the last one: the lab reads the serial console),
// after its own arguments, without duplicates.
func TestInitKernelArgs(t *testing.T) {
	written := []any{"console=ttyS0", "console=tty0", "quiet", "panic=-1", 7}
	got := TreeOptions{InitKernelArgs: true}.kernelArgs(written)
	want := []string{"console=ttyS0", "panic=-1", "no_timer_check", "quiet"}
	if !slices.Equal(got, want) {
		t.Errorf("kernel args %q, want %q", got, want)
	}
	if got := (TreeOptions{}).kernelArgs(written); !slices.Equal(got, DefaultKernelArgs()) {
		t.Errorf("without InitKernelArgs: %q, want the lab's %q", got, DefaultKernelArgs())
	}
	own := []string{"console=ttyS0", "x"}
	if got := (TreeOptions{InitKernelArgs: true, KernelArgs: own}).kernelArgs(written); !slices.Equal(got, own) {
		t.Errorf("with KernelArgs: %q, want %q", got, own)
	}
}
