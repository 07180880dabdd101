package artifact

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKernelThroughEscapingDirSymlink: a kernel reached through a directory
// symlink that leaves the image rootfs is "not found" (404) with a reason
// that says so, not an internal error (500).
func TestKernelThroughEscapingDirSymlink(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "vmlinuz-x"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, kernel, link, target string }{
		{"named kernel, absolute dir link", "kboot/vmlinuz-x", "kboot", outside},
		{"named kernel, dir link up", "kboot/vmlinuz-x", "kboot", "../../../../.."},
		{"newest kernel, boot is a link", "", "boot", outside},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tt := newTree(t)
			tt.file("images/img/rootfs/etc/os-release", "ID=x\n", 0o644)
			tt.symlink("images/img/rootfs/"+tc.link, tc.target)
			nodes := "[nodes.n1]\nimage = \"img\"\n"
			if tc.kernel != "" {
				nodes += "kernel = \"" + tc.kernel + "\"\n"
			}
			snap := snapshot(t, nodes)
			b, _ := newBuilder(t, tt.root)
			_, err := b.Kernel(bg, snap, snap.Nodes.ByName["n1"])
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
			if !strings.Contains(err.Error(), "leads out of the image rootfs") {
				t.Errorf("reason unclear: %v", err)
			}
		})
	}
}
