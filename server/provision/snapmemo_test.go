package provision

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
)

// TestArchMemo: within its interval the architecture is looked up once per
// (snapshot, image, kernel); a new snapshot, another image or kernel, or a
// zero interval looks again.
func TestArchMemo(t *testing.T) {
	calls := 0
	find := func(arch string) func() (string, error) {
		return func() (string, error) { calls++; return arch, nil }
	}
	get := func(m *snapMemo[archKey, string], s *config.Snapshot, n *config.Node, find func() (string, error)) string {
		v, err := m.get(s, archKey{n.Image, n.Kernel}, find)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	s1, s2 := &config.Snapshot{Gen: 1}, &config.Snapshot{Gen: 2}
	a := &config.Node{Name: "a", Image: "x86"}
	b := &config.Node{Name: "b", Image: "x86"}
	arm := &config.Node{Name: "c", Image: "arm"}
	m := &snapMemo[archKey, string]{every: time.Hour}
	for _, step := range []struct {
		snap  *config.Snapshot
		n     *config.Node
		found string
		want  string
		calls int
	}{
		{s1, a, "x86_64", "x86_64", 1},
		{s1, a, "arm64", "x86_64", 1}, // remembered
		{s1, b, "arm64", "x86_64", 1}, // same image and kernel
		{s1, arm, "arm64", "arm64", 2},
		{s2, a, "arm64", "arm64", 3}, // new snapshot
		{s2, a, "x86_64", "arm64", 3},
	} {
		if got := get(m, step.snap, step.n, find(step.found)); got != step.want || calls != step.calls {
			t.Fatalf("get(gen %d, %s) = %q after %d lookups, want %q after %d", step.snap.Gen, step.n.Name, got, calls, step.want, step.calls)
		}
	}
	k := &config.Node{Name: "k", Image: "x86", Kernel: "boot/other"}
	if got := get(m, s2, k, find("riscv64")); got != "riscv64" || calls != 4 {
		t.Fatalf("another kernel: %q after %d lookups", got, calls)
	}
	off := &snapMemo[archKey, string]{}
	for i := range 3 {
		if got := get(off, s1, a, find("x86_64")); got != "x86_64" || calls != 5+i {
			t.Fatalf("zero interval: %q after %d lookups", got, calls)
		}
	}
}

// TestSnapMemoExpiryAndErrors: an expired answer is looked up again (once),
// and a failed lookup is neither remembered nor leaves the old answer in
// place.
func TestSnapMemoExpiryAndErrors(t *testing.T) {
	snap := &config.Snapshot{Gen: 1}
	m := &snapMemo[string, string]{every: time.Hour}
	calls := 0
	answer := func(v string, err error) func() (string, error) {
		return func() (string, error) { calls++; return v, err }
	}
	expire := func() { expireMemo(t, m, "img") }
	boom := errors.New("boom")
	steps := []struct {
		name   string
		before func()
		find   func() (string, error)
		want   string
		err    error
		calls  int
	}{
		{"a failure", nil, answer("", boom), "", boom, 1},
		{"is not remembered", nil, answer("d1", nil), "d1", nil, 2},
		{"an answer is", nil, answer("d2", nil), "d1", nil, 2},
		{"expired", expire, answer("d2", nil), "d2", nil, 3},
		{"remembered again", nil, answer("d3", nil), "d2", nil, 3},
		{"expired, failing", expire, answer("", boom), "", boom, 4},
		{"the old answer is gone", nil, answer("d4", nil), "d4", nil, 5},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		got, err := m.get(snap, "img", s.find)
		if got != s.want || !errors.Is(err, s.err) || calls != s.calls {
			t.Fatalf("%s: got %q, %v after %d lookups; want %q, %v after %d", s.name, got, err, calls, s.want, s.err, s.calls)
		}
	}
}

// expireMemo makes key's remembered answer expired.
func expireMemo(t *testing.T, m *snapMemo[string, string], key string) {
	t.Helper()
	v, ok := m.cur.Load().m.Load(key)
	if !ok {
		t.Fatal("nothing remembered")
	}
	m.cur.Load().m.Store(key, &memoEntry[string]{v: v.(*memoEntry[string]).v})
}

// TestSnapMemoNoOldAnswerWhileLooking: while one request looks an expired
// answer up again (an edited image being rebuilt), another gets a fresh
// answer too, never the old one (a node would boot the old image).
func TestSnapMemoNoOldAnswerWhileLooking(t *testing.T) {
	snap := &config.Snapshot{Gen: 1}
	m := &snapMemo[string, string]{every: time.Hour}
	if v, err := m.get(snap, "img", func() (string, error) { return "old", nil }); v != "old" || err != nil {
		t.Fatalf("first lookup: %q, %v", v, err)
	}
	expireMemo(t, m, "img")
	inside, release := make(chan struct{}), make(chan struct{})
	slow := make(chan string, 1)
	go func() {
		v, _ := m.get(snap, "img", func() (string, error) {
			close(inside)
			<-release
			return "new", nil
		})
		slow <- v
	}()
	<-inside
	v, err := m.get(snap, "img", func() (string, error) { return "new", nil })
	close(release)
	if v != "new" || err != nil {
		t.Fatalf("during the slow lookup: %q, %v; want the new answer", v, err)
	}
	if v := <-slow; v != "new" {
		t.Fatalf("slow lookup: %q", v)
	}
}

// TestTwoStageDigestRemembered: a two-stage node's script asks the builder
// for the image index once per interval and snapshot, not per request.
func TestTwoStageDigestRemembered(t *testing.T) {
	e, tb := newTwoStageEnv(t, false)
	e.h.digests.every = time.Hour
	indexCalls := func() int {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		return tb.calls["index"]
	}
	want := "wwimage=" + chunkimage.Digest(tb.index)
	for i := range 3 {
		resp, body := e.get("/ipxe/" + macN004)
		wantCode(t, resp, body, http.StatusOK)
		if !strings.Contains(string(body), want) {
			t.Fatalf("request %d: script lacks %q", i, want)
		}
	}
	if n := indexCalls(); n != 1 {
		t.Fatalf("3 scripts asked for the index %d times, want 1", n)
	}
	// A new snapshot asks again.
	snap := *e.cfg.snap.Load()
	e.cfg.snap.Store(&snap)
	resp, body := e.get("/ipxe/" + macN004)
	wantCode(t, resp, body, http.StatusOK)
	if n := indexCalls(); n != 2 {
		t.Fatalf("after a new snapshot: %d index lookups, want 2", n)
	}
}
