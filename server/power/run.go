package power

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Options bound a Run.
type Options struct {
	Parallel int           // BMCs talked to at once (<= 0: DefaultParallel)
	Timeout  time.Duration // per node, connecting included (<= 0: DefaultTimeout)
	// New makes a node's controller (nil: New); tests put a fake here.
	New func(Target) (Controller, error)
}

// Defaults of Options.
const (
	DefaultParallel = 32
	DefaultTimeout  = 10 * time.Second
)

// Job is one node to act on: its target, or why there is none.
type Job struct {
	Node   string
	Target Target
	Err    error // set: the node is not tried (e.g. no BMC configured)
}

// Result is what one node's BMC answered.
type Result struct {
	Node    string
	State   State // Status only
	Err     error
	Elapsed time.Duration
}

// Run does action on every job's node, at most opts.Parallel at a time,
// each within opts.Timeout, and returns one result per job in job order.
// It returns early only by ctx (the unfinished nodes then fail with its
// error).
func Run(ctx context.Context, jobs []Job, a Action, opts Options) []Result {
	if opts.Parallel <= 0 {
		opts.Parallel = DefaultParallel
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.New == nil {
		opts.New = New
	}
	results := make([]Result, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(opts.Parallel, len(jobs)) {
		wg.Go(func() {
			for i := range next {
				results[i] = runOne(ctx, jobs[i], a, opts)
			}
		})
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

// runOne does action on one job's node within opts.Timeout.
func runOne(ctx context.Context, j Job, a Action, opts Options) Result {
	r := Result{Node: j.Node, Err: j.Err}
	if r.Err != nil {
		return r
	}
	if err := ctx.Err(); err != nil {
		r.Err = err
		return r
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	c, err := opts.New(j.Target)
	if err == nil {
		r.State, err = Do(ctx, c, a)
	}
	r.Elapsed = time.Since(start)
	if err != nil {
		r.Err = fmt.Errorf("%s: %w", a, timeoutError(ctx, err, opts.Timeout))
	}
	return r
}
