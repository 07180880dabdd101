package artifact

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRacyFingerprint: a just-written file is fingerprinted with its
// content; once it settles the fingerprint stays the same (no rebuild).
func TestRacyFingerprint(t *testing.T) {
	defer func(w time.Duration) { racyWindow = w }(racyWindow)
	racyWindow = 100 * time.Millisecond
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte("aaaa"), 0o644)
	var hc hashCache
	fp1, err := fingerprintTree(dir, treeOverlay, &hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(hc.m) != 1 {
		t.Fatalf("racy file not hashed: %d cache entries", len(hc.m))
	}
	for _, e := range hc.m {
		if e.settled {
			t.Error("racy hash marked settled")
		}
	}
	// Same content, same metadata: same fingerprint while racy...
	fp2, _ := fingerprintTree(dir, treeOverlay, &hc, nil)
	if fp1.hash != fp2.hash {
		t.Error("unchanged racy file: fingerprint changed")
	}
	// ...and once it has settled.
	time.Sleep(racyWindow + 20*time.Millisecond)
	fp3, _ := fingerprintTree(dir, treeOverlay, &hc, nil)
	if fp3.hash != fp1.hash {
		t.Error("fingerprint changed when the file settled")
	}
	for _, e := range hc.m {
		if !e.settled {
			t.Error("settled file not marked settled")
		}
	}
	// A fresh cache (a restarted server) gives a metadata-only fingerprint:
	// different, which costs one rebuild and is never stale.
	fp4, _ := fingerprintTree(dir, treeOverlay, &hashCache{}, nil)
	if fp4.hash == fp1.hash {
		t.Error("expected a metadata-only fingerprint")
	}
	// A content change within the same timestamp tick keeps size, mtime and
	// maybe ctime; the content hash still tells.
	os.WriteFile(p, []byte("bbbb"), 0o644)
	st, _ := os.Stat(p)
	os.Chtimes(p, st.ModTime(), st.ModTime())
	fp5, _ := fingerprintTree(dir, treeOverlay, &hc, nil)
	if fp5.hash == fp3.hash {
		t.Error("content change not seen")
	}
}

func TestFingerprintCovers(t *testing.T) {
	tt := newTree(t)
	tt.file("a/b", "x", 0o644)
	tt.symlink("a/l", "b")
	var hc hashCache
	fp := func() string {
		f, err := fingerprintTree(tt.root, treeOverlay, &hc, nil)
		if err != nil {
			t.Fatal(err)
		}
		return f.hash
	}
	prev := fp()
	for _, c := range []struct {
		what   string
		change func()
	}{
		{"chmod", func() { os.Chmod(filepath.Join(tt.root, "a/b"), 0o600) }},
		{"chown", func() { os.Lchown(filepath.Join(tt.root, "a/b"), 1, 2) }},
		{"relink", func() { os.Remove(filepath.Join(tt.root, "a/l")); os.Symlink("c", filepath.Join(tt.root, "a/l")) }},
		{"mtime", func() { os.Chtimes(filepath.Join(tt.root, "a/b"), time.Unix(1, 0), time.Unix(1, 0)) }},
		{"new dir", func() { os.Mkdir(filepath.Join(tt.root, "d"), 0o755) }},
		{"rename", func() { os.Rename(filepath.Join(tt.root, "d"), filepath.Join(tt.root, "e")) }},
		{"dirmode", func() { os.Chmod(filepath.Join(tt.root, "e"), 0o700) }},
		{"content", func() { os.WriteFile(filepath.Join(tt.root, "a/b"), []byte("y"), 0o600) }},
	} {
		what, change := c.what, c.change
		change()
		if now := fp(); now == prev {
			t.Errorf("%s not seen", what)
		} else {
			prev = now
		}
	}
	if fp() != prev {
		t.Error("fingerprint of an unchanged tree changed")
	}
}
