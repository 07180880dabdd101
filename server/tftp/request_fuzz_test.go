package tftp

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FuzzCleanName: a name cleanName accepts is relative, clean and has no
// ".." element, so os.Root gets nothing that even looks like an escape.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"undionly.kpxe", "a/../b", "../x", "/etc/passwd", `\x`, "a//b/./c/", "..", ".", "a\x00b", "a\\..\\b", "...", "a/..."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		c, err := cleanName(name)
		if err != nil {
			if c != "" {
				t.Fatalf("%q: error with a result %q", name, c)
			}
			return
		}
		if c == "" || c == "." || strings.HasPrefix(c, "/") || path.Clean(c) != c || strings.ContainsRune(c, 0) {
			t.Fatalf("%q → %q: not a clean relative name", name, c)
		}
		if slices.Contains(strings.Split(c, "/"), "..") || slices.Contains(strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '\\' }), "..") {
			t.Fatalf("%q → %q: a '..' element got through", name, c)
		}
	})
}

// FuzzRequest sends arbitrary packets (seeded with RRQ/WRQ and their
// options, escapes, a FIFO) to a running server over loopback, then fetches
// a file with a real client. Invariants: the server stays up and serves
// (no panic, no slot held), no packet it sends carries a file from outside
// the directory, and nothing is written to the directory.
func FuzzRequest(f *testing.F) {
	rq := func(op byte, parts ...string) []byte {
		return append([]byte{0, op}, []byte(strings.Join(parts, "\x00")+"\x00")...)
	}
	for _, p := range [][]byte{
		rq(1, "ok.efi", "octet"),
		rq(1, "ok.efi", "netascii", "tsize", "0", "blksize", "65464", "windowsize", "64"),
		rq(1, "ok.efi", "octet", "blksize", "7", "timeout", "0"),
		rq(1, "ok.efi", "octet", "blksize", "99999999999999999999", "tsize", "-1"),
		rq(1, "escape", "octet"),
		rq(1, "../secret", "octet"),
		rq(1, "fifo", "octet"),
		rq(1, "sub", "octet"),
		rq(2, "new.efi", "octet"),
		rq(1, "ok.efi", "mail"),
		rq(1, "ok.efi"),
		{0, 1, 'o', 'k'},
		{0, 3, 0, 1, 'x'},
		{0, 4, 0, 0},
		{0, 5, 0, 8, 0},
		{0, 6, 't', 0},
		{0},
		{},
	} {
		f.Add(p)
	}
	const secret = "SECRET-OUTSIDE-THE-TFTP-DIR"
	e := startLoopback(f, Options{MaxTransfers: 64, QueueWait: time.Second, Timeout: 100 * time.Millisecond, Retries: 1}, "10.201.0.11")
	want := randomFile(f, filepath.Join(e.dir, "ok.efi"), 3000)
	outside := filepath.Join(f.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte(secret), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(e.dir, "escape")); err != nil {
		f.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(e.dir, "fifo"), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(e.dir, "sub"), 0o755); err != nil {
		f.Fatal(err)
	}
	listing := func() []string {
		ents, err := os.ReadDir(e.dir)
		if err != nil {
			f.Fatal(err)
		}
		var names []string
		for _, de := range ents {
			names = append(names, de.Name())
		}
		return names
	}
	before := listing()

	f.Fuzz(func(t *testing.T, packet []byte) {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.WriteTo(packet, e.srv.Addr()); err != nil {
			t.Fatal(err)
		}
		// A real transfer from another port: the server is alive and has
		// a free slot. Its reply also means the fuzzed packet, sent
		// before on the same path, has been read.
		c := e.client(t)
		c.SetBlockSize(1468)
		wt, err := c.Receive("ok.efi", "octet")
		var got bytes.Buffer
		if err == nil {
			_, err = wt.WriteTo(&got)
		}
		if err != nil || !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("after %q: transfer of ok.efi: %v (%d bytes)", packet, err, got.Len())
		}
		// Whatever the server sent back to the fuzzed request so far.
		buf := make([]byte, 70000)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("read: %v", err)
				}
				break
			}
			if bytes.Contains(buf[:n], []byte(secret)) {
				t.Fatalf("after %q: the server sent the file outside its directory", packet)
			}
		}
		if after := listing(); !slices.Equal(after, before) {
			t.Fatalf("after %q: directory changed: %v → %v", packet, before, after)
		}
	})
}
