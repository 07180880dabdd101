package build

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/wwcluster/ww/server/config"
)

// Stats reports a BuildAll run.
type Stats struct {
	Nodes        int           // nodes visited
	Failed       int           // nodes with at least one error
	Built        int64         // cache files written during the run
	Reused       int64         // cache parts found already built
	BytesWritten int64         // bytes written under the state directory
	Elapsed      time.Duration // wall time
}

// maxReportedErrors bounds the errors BuildAll returns (joined); the rest are
// counted.
const maxReportedErrors = 20

// BuildAll prebuilds every node's image, system overlay and runtime overlay
// (and checks its kernel) with a pool of workers (<= 0: GOMAXPROCS). Shared
// parts are built once; every source tree is walked once per run. It goes on
// past failing nodes and returns their errors joined (at most
// maxReportedErrors of them, then a count).
func (b *Builder) BuildAll(ctx context.Context, snap *config.Snapshot, workers int) (Stats, error) {
	start := time.Now()
	built0, reused0, written0 := b.built.Load(), b.reused.Load(), b.written.Load()
	var st Stats
	if snap == nil || snap.Nodes == nil {
		return st, errors.New("build all: no configuration snapshot")
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	fps := b.newFingerprints()
	jobs := make(chan *config.Node)
	var (
		mu     sync.Mutex
		errs   []error
		failed int
		wg     sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				err := b.buildNode(ctx, fps, snap, n)
				if err == nil {
					continue
				}
				mu.Lock()
				failed++
				if len(errs) < maxReportedErrors {
					errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, n := range snap.Nodes.List {
		select {
		case jobs <- n:
			st.Nodes++
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	if failed > len(errs) {
		errs = append(errs, fmt.Errorf("and %d more failed nodes", failed-len(errs)))
	}
	st.Failed = failed
	st.Built = b.built.Load() - built0
	st.Reused = b.reused.Load() - reused0
	st.BytesWritten = b.written.Load() - written0
	st.Elapsed = time.Since(start)
	b.log.Info("build all", "nodes", st.Nodes, "failed", st.Failed, "built", st.Built,
		"reused", st.Reused, "bytes", st.BytesWritten, "took", st.Elapsed.Round(time.Millisecond))
	return st, errors.Join(errs...)
}

func (b *Builder) buildNode(ctx context.Context, fps *fingerprints, snap *config.Snapshot, n *config.Node) error {
	var errs []error
	check := func(kind string, err error) {
		if err != nil {
			b.m.errors.WithLabelValues(kind).Inc()
			errs = append(errs, err)
		}
	}
	_, err := b.kernel(n)
	check("kernel", err)
	_, err = b.image(ctx, fps, n)
	check("image", err)
	_, err = b.systemOverlay(ctx, fps, snap, n)
	check("system", err)
	_, err = b.runtimeOverlay(ctx, fps, snap, n)
	check("runtime", err)
	return errors.Join(errs...)
}
