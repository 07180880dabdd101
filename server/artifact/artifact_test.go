package artifact

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// twoParts makes an Artifact of two files "0123456789" + "abcdefghij".
func twoParts(t *testing.T) (*Artifact, string) {
	dir := t.TempDir()
	p1, p2 := filepath.Join(dir, "1"), filepath.Join(dir, "2")
	os.WriteFile(p1, []byte("0123456789"), 0o644)
	os.WriteFile(p2, []byte("abcdefghij"), 0o644)
	return &Artifact{Name: "x.img.gz", ETag: `"tag"`, Size: 20, ModTime: time.Unix(1e9, 0), Parts: []string{p1, p2}, sizes: []int64{10, 10}},
		"0123456789abcdefghij"
}

func TestArtifactOpenSeek(t *testing.T) {
	a, want := twoParts(t)
	r, err := a.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	all, err := io.ReadAll(r)
	if err != nil || string(all) != want {
		t.Fatalf("read %q %v", all, err)
	}
	// Seek across the boundary from every whence.
	for _, c := range []struct {
		off    int64
		whence int
		pos    int64
	}{{7, io.SeekStart, 7}, {-13, io.SeekCurrent, 7}, {-13, io.SeekEnd, 7}, {10, io.SeekStart, 10}, {19, io.SeekStart, 19}} {
		if c.whence == io.SeekCurrent {
			r.Seek(20, io.SeekStart)
		}
		pos, err := r.Seek(c.off, c.whence)
		if err != nil || pos != c.pos {
			t.Fatalf("seek %d/%d: %d %v", c.off, c.whence, pos, err)
		}
		buf := make([]byte, 6)
		n, err := io.ReadFull(r, buf)
		wantPart := want[c.pos:min(c.pos+6, 20)]
		if string(buf[:n]) != wantPart {
			t.Errorf("at %d read %q, want %q (%v)", c.pos, buf[:n], wantPart, err)
		}
	}
	// Every (offset, length) via a SectionReader over the ReaderAt.
	ra := r.(io.ReaderAt)
	for off := int64(0); off <= 20; off++ {
		for n := int64(0); off+n <= 20; n++ {
			got, err := io.ReadAll(io.NewSectionReader(ra, off, n))
			if err != nil || string(got) != want[off:off+n] {
				t.Fatalf("section %d+%d: %q %v", off, n, got, err)
			}
		}
	}
	// Reading past the end.
	buf := make([]byte, 5)
	if n, err := ra.ReadAt(buf, 18); n != 2 || err != io.EOF {
		t.Errorf("ReadAt past end: %d %v", n, err)
	}
}

func TestArtifactServeContentRange(t *testing.T) {
	a, want := twoParts(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r, err := a.Open()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer r.Close()
		w.Header().Set("ETag", a.ETag)
		http.ServeContent(w, req, a.Name, a.ModTime, r)
	}))
	defer srv.Close()
	get := func(hdr ...string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		for i := 0; i < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	resp, body := get()
	if resp.StatusCode != 200 || body != want || resp.ContentLength != 20 {
		t.Errorf("full: %d %q %d", resp.StatusCode, body, resp.ContentLength)
	}
	resp, body = get("Range", "bytes=8-12")
	if resp.StatusCode != 206 || body != "89abc" || resp.Header.Get("Content-Range") != "bytes 8-12/20" {
		t.Errorf("range over the boundary: %d %q %s", resp.StatusCode, body, resp.Header.Get("Content-Range"))
	}
	resp, body = get("Range", "bytes=-3")
	if resp.StatusCode != 206 || body != "hij" {
		t.Errorf("suffix range: %d %q", resp.StatusCode, body)
	}
	resp, body = get("Range", "bytes=0-1,9-10")
	if resp.StatusCode != 206 || !strings.Contains(body, "01") || !strings.Contains(body, "9a") {
		t.Errorf("multi range: %d %q", resp.StatusCode, body)
	}
	resp, _ = get("If-None-Match", a.ETag)
	if resp.StatusCode != 304 {
		t.Errorf("If-None-Match: %d", resp.StatusCode)
	}
}

// TestArtifactRealRange: Range over the boundary of a built system overlay.
func TestArtifactRealRange(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	snap := snapshot(t, testNodesTOML)
	b, _ := newBuilder(t, tt.root)
	a, err := b.SystemOverlay(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	whole := readAll(t, a)
	first, _ := os.Stat(a.Parts[0])
	r, _ := a.Open()
	defer r.Close()
	if _, err := r.Seek(first.Size()-5, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(r, buf); err != nil || !bytes.Equal(buf, whole[first.Size()-5:first.Size()+5]) {
		t.Errorf("read over the part boundary: %v", err)
	}
}

// TestStateDeleted: deleting the state directory under a running Builder
// costs at most one failed Open; the next call rebuilds.
func TestStateDeleted(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	snap := snapshot(t, testNodesTOML)
	b, _ := newBuilder(t, tt.root)
	n := snap.Nodes.ByName["n001"]
	a, err := b.SystemOverlay(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range a.Parts {
		os.Remove(p)
	}
	if _, err := a.Open(); err == nil {
		t.Fatal("opened a removed part")
	}
	a2, err := b.SystemOverlay(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	if a2.ETag != a.ETag {
		t.Error("same inputs, different ETag")
	}
	readAll(t, a2)
}

// TestPrune: old unused cache files go, current ones stay.
func TestPrune(t *testing.T) {
	tt := newTree(t)
	tt.standard()
	snap := snapshot(t, testNodesTOML)
	b, _ := newBuilder(t, tt.root)
	n := snap.Nodes.ByName["n001"]
	old, err := b.SystemOverlay(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	tt.file("overlays/wwinit/etc/motd", "changed\n", 0o644)
	cur, err := b.SystemOverlay(bg, snap, n)
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(tt.root, "state/overlays/node", tmpPrefix+"x.img.gz-123")
	os.WriteFile(stale, nil, 0o600)
	// Nothing is old enough yet.
	if removed, err := b.Prune(time.Hour); err != nil || removed != 0 {
		t.Fatalf("prune: %d %v", removed, err)
	}
	// Age everything by two hours, then use the current artifact again.
	past := time.Now().Add(-2 * time.Hour)
	for _, p := range append(append([]string{stale}, old.Parts...), cur.Parts...) {
		os.Chtimes(p, past, past)
	}
	b.mu.Lock()
	for _, p := range b.parts {
		p.used.Store(past.UnixNano())
	}
	b.mu.Unlock()
	cur2, err := b.SystemOverlay(bg, snap, n)
	if err != nil || cur2.ETag != cur.ETag {
		t.Fatal(err)
	}
	removed, err := b.Prune(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if removed != 4 { // the old files, rendered and node members, the stale temp file
		t.Errorf("removed %d files, want 4", removed)
	}
	for _, p := range old.Parts {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s kept", p)
		}
	}
	readAll(t, cur2)
	// A pruned artifact comes back on request.
	tt.file("overlays/wwinit/etc/motd", "welcome\n", 0o644)
	if _, err := b.SystemOverlay(bg, snap, n); err != nil {
		t.Fatal(err)
	}
}

// TestFIFOSwap: a regular file swapped for a FIFO during a build does not
// hang the build.
func TestFIFOSwap(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "f"), 0o644); err != nil {
		t.Skip(err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan error, 1)
	go func() {
		e := entry{rel: "f", mode: 0o644}
		done <- writeEntry(newArchive(io.Discard), &e, "f", func() (*os.File, error) { return openRead(r, "f") })
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errChanged) {
			t.Errorf("got %v, want errChanged", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("build hung on a FIFO")
	}
}
