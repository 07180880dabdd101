package build

import (
	"context"
	"sync"
)

// flightGroup runs fn once per key at a time; callers arriving while it runs
// share its result (a small singleflight). fn runs in its own goroutine so a
// caller whose ctx ends stops waiting while the build goes on for the others
// (and for the cache).
type flightGroup[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]*flightCall[V]
}

type flightCall[V any] struct {
	done    chan struct{}
	waiters int // callers that joined (for tests)
	val     V
	err     error
}

// Do returns the result of fn or of the call for key already in flight.
func (g *flightGroup[K, V]) Do(ctx context.Context, key K, fn func() (V, error)) (V, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[K]*flightCall[V]{}
	}
	c, ok := g.m[key]
	if !ok {
		c = &flightCall[V]{done: make(chan struct{})}
		g.m[key] = c
		go func() {
			c.val, c.err = safeCall(fn)
			g.mu.Lock()
			delete(g.m, key)
			g.mu.Unlock()
			close(c.done)
		}()
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

// joined returns how many callers joined the calls in flight (for tests).
func (g *flightGroup[K, V]) joined() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, c := range g.m {
		n += c.waiters
	}
	return n
}
