package artifact

import (
	"context"
	"fmt"
	"sync"
)

// freshGroup coalesces calls of an expensive read-only computation (a tree
// walk) per key without ever handing a caller a stale answer: every caller
// gets the result of a call that STARTED AFTER the caller arrived.
//
// A caller that finds no call running starts one. A caller that finds a call
// running cannot use it (it may have read the tree before the caller's
// change), so it joins the single queued "next" call, which starts when the
// running one ends and is shared by everyone who queued meanwhile. N
// concurrent callers therefore cost one or two calls, and each caller waits
// at most for the rest of the running call plus one full call.
//
// The computation runs in its own goroutine, so a caller whose ctx ends stops
// waiting without cancelling the call for the others.
//
// With shareRunning set, a caller instead shares the running call (a small
// singleflight): for builds, whose result does not depend on when they
// started (content-addressed cache files).
type freshGroup[K comparable, V any] struct {
	shareRunning bool
	mu           sync.Mutex
	m            map[K]*freshState[V]
}

type freshState[V any] struct {
	running *freshCall[V] // started; its result may predate later arrivals
	next    *freshCall[V] // queued; starts when running ends
}

type freshCall[V any] struct {
	fn      func() (V, error)
	done    chan struct{}
	waiters int // callers sharing this call (for tests)
	val     V
	err     error
}

// Do returns fn's result from a call that started after Do was called. fn of
// a queued call comes from the first caller that queued it; all callers of
// one key must compute the same thing.
func (g *freshGroup[K, V]) Do(ctx context.Context, key K, fn func() (V, error)) (V, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[K]*freshState[V]{}
	}
	st := g.m[key]
	var c *freshCall[V]
	switch {
	case st == nil:
		c = &freshCall[V]{fn: fn, done: make(chan struct{})}
		st = &freshState[V]{running: c}
		g.m[key] = st
		go g.run(key, st)
	case g.shareRunning:
		c = st.running
	case st.next == nil:
		c = &freshCall[V]{fn: fn, done: make(chan struct{})}
		st.next = c
	default:
		c = st.next
	}
	c.waiters++
	g.mu.Unlock()

	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// joined returns how many callers share the calls of every key, running
// or queued (for tests).
func (g *freshGroup[K, V]) joined() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, st := range g.m {
		for _, c := range []*freshCall[V]{st.running, st.next} {
			if c != nil {
				n += c.waiters
			}
		}
	}
	return n
}

// run executes st.running, then any call queued meanwhile, until none is left.
func (g *freshGroup[K, V]) run(key K, st *freshState[V]) {
	g.mu.Lock()
	c := st.running
	g.mu.Unlock()
	for c != nil {
		c.val, c.err = safeCall(c.fn)
		g.mu.Lock()
		close(c.done)
		c = st.next
		st.next = nil
		st.running = c
		if c == nil {
			delete(g.m, key)
		}
		g.mu.Unlock()
	}
}

// safeCall runs fn and turns a panic into an error.
func safeCall[V any](fn func() (V, error)) (v V, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: panic: %v", r)
		}
	}()
	return fn()
}
