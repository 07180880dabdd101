package power

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBMC is a Controller for the Run seam: each call waits for release
// (or ctx) and records how many calls were in flight at once; release is
// closed once "full" calls are in flight at once.
type fakeBMC struct {
	node    string
	release chan struct{}
	once    *sync.Once
	full    int
	mu      *sync.Mutex
	active  *int
	peak    *int
	fail    bool
	hang    bool
}

func (f *fakeBMC) call(ctx context.Context) error {
	f.mu.Lock()
	*f.active++
	*f.peak = max(*f.peak, *f.active)
	if *f.active == f.full {
		f.once.Do(func() { close(f.release) })
	}
	f.mu.Unlock()
	defer func() { f.mu.Lock(); *f.active--; f.mu.Unlock() }()
	if f.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	select {
	case <-f.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	if f.fail {
		return errors.New("refused")
	}
	return nil
}

func (f *fakeBMC) On(ctx context.Context) error    { return f.call(ctx) }
func (f *fakeBMC) Off(ctx context.Context) error   { return f.call(ctx) }
func (f *fakeBMC) Cycle(ctx context.Context) error { return f.call(ctx) }
func (f *fakeBMC) Reset(ctx context.Context) error { return f.call(ctx) }
func (f *fakeBMC) Status(ctx context.Context) (State, error) {
	if err := f.call(ctx); err != nil {
		return "", err
	}
	return StateOn, nil
}

// TestRunBoundedOrderedTimed: Run never has more than Parallel calls in
// flight, returns the results in job order, times out a hung BMC alone,
// and reports jobs that had no target without calling anything.
func TestRunBoundedOrderedTimed(t *testing.T) {
	const n, parallel = 40, 4
	release := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	active, peak := 0, 0
	jobs := make([]Job, n)
	for i := range jobs {
		jobs[i] = Job{Node: fmt.Sprintf("n%03d", i), Target: Target{Node: fmt.Sprintf("n%03d", i), Address: "bmc"}}
	}
	jobs[3].Err = errors.New("no BMC address")
	fakes := map[string]*fakeBMC{}
	for _, j := range jobs {
		fakes[j.Node] = &fakeBMC{node: j.Node, release: release, once: &once, full: parallel, mu: &mu, active: &active, peak: &peak,
			fail: j.Node == "n007", hang: j.Node == "n011"}
	}
	opts := Options{Parallel: parallel, Timeout: 300 * time.Millisecond,
		New: func(t Target) (Controller, error) { return fakes[t.Node], nil }}
	done := make(chan []Result)
	go func() { done <- Run(context.Background(), jobs, Status, opts) }()
	res := <-done // the first calls return only once parallel of them are in flight
	if peak != parallel {
		t.Errorf("peak concurrency %d, want %d", peak, parallel)
	}
	for i, r := range res {
		if r.Node != jobs[i].Node {
			t.Fatalf("result %d is %s, want %s (job order)", i, r.Node, jobs[i].Node)
		}
		switch r.Node {
		case "n003":
			if r.Err == nil || r.Err.Error() != "no BMC address" {
				t.Errorf("n003: %v", r.Err)
			}
		case "n007":
			if r.Err == nil || !strings.Contains(r.Err.Error(), "refused") {
				t.Errorf("n007: %v", r.Err)
			}
		case "n011":
			if r.Err == nil || !strings.Contains(r.Err.Error(), "no answer within 300ms") {
				t.Errorf("n011 (hung): %v", r.Err)
			}
		default:
			if r.Err != nil || r.State != StateOn {
				t.Errorf("%s: %v %q", r.Node, r.Err, r.State)
			}
		}
	}
}

// TestRunCancelled: a cancelled run fails the nodes not yet done.
func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := Run(ctx, []Job{{Node: "a"}, {Node: "b"}}, On, Options{New: func(Target) (Controller, error) {
		t.Error("a controller was made after cancel")
		return nil, errors.New("no")
	}})
	for _, r := range res {
		if !errors.Is(r.Err, context.Canceled) {
			t.Errorf("%s: %v", r.Node, r.Err)
		}
	}
}

// TestEscapeReader: Ctrl-] anywhere and ~. at a line start end the input;
// a ~ elsewhere, or not followed by '.', is passed on.
func TestEscapeReader(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"ls\r\x1dafter", "ls\r"},
		{"abc\x1d", "abc"},
		{"~.", ""},
		{"echo a~.b\r~.rest", "echo a~.b\r"},
		{"x\n~x~.\n~.", "x\n~x~.\n"},
		{"~~\r", "~~\r"},
		{"plain", "plain"},
	} {
		got, err := io.ReadAll(NewEscapeReader(strings.NewReader(c.in)))
		if err != nil || string(got) != c.want {
			t.Errorf("%q: got %q (%v), want %q", c.in, got, err, c.want)
		}
	}
}

func TestParseAction(t *testing.T) {
	for _, a := range Actions() {
		if got, err := ParseAction(string(a)); err != nil || got != a {
			t.Errorf("%s: %v %v", a, got, err)
		}
	}
	if _, err := ParseAction("soft"); err == nil || !strings.Contains(err.Error(), "on, off, cycle, reset or status") {
		t.Errorf("soft: %v", err)
	}
}
