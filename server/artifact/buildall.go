package artifact

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
	Checked      int64         // per-node members rendered to check them, not stored
	BytesWritten int64         // bytes written under the state directory
	Elapsed      time.Duration // wall time
}

// maxReportedErrors bounds the errors BuildAll returns (joined); the rest are
// counted.
const maxReportedErrors = 20

// BuildAll prebuilds every node's image, system overlay and runtime overlay
// (and checks its kernel) with a pool of workers (<= 0: GOMAXPROCS). Shared
// parts are built once; every source tree is walked once per run. Per-node
// overlay members are rendered, so their template errors are reported, but
// not stored: a server process builds its own on a node's first request. It goes on
// past failing nodes and returns their errors joined (at most
// maxReportedErrors of them, then a count).
func (b *Builder) BuildAll(ctx context.Context, snap *config.Snapshot, workers int) (Stats, error) {
	start := time.Now()
	built0, reused0, written0, checked0 := b.built.Load(), b.reused.Load(), b.written.Load(), b.checked.Load()
	var st Stats
	if snap == nil || snap.Nodes == nil {
		return st, errors.New("build all: no configuration snapshot")
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	fps := b.newFingerprints()
	kernels := &kernelChecks{m: map[[2]string]error{}}
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
				err := b.buildNode(ctx, fps, kernels, snap, n)
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
	st.Checked = b.checked.Load() - checked0
	st.Elapsed = time.Since(start)
	b.log.Info("build all", "nodes", st.Nodes, "failed", st.Failed, "built", st.Built,
		"reused", st.Reused, "checked", st.Checked, "bytes", st.BytesWritten, "took", st.Elapsed.Round(time.Millisecond))
	return st, errors.Join(errs...)
}

// kernelChecks remembers, for one BuildAll run, the kernel check of each
// (image, kernel setting): nodes sharing them share the answer.
type kernelChecks struct {
	mu sync.Mutex
	m  map[[2]string]error
}

func (k *kernelChecks) check(b *Builder, n *config.Node) error {
	key := [2]string{n.Image, n.Kernel}
	k.mu.Lock()
	err, ok := k.m[key]
	k.mu.Unlock()
	if ok {
		return err
	}
	_, err = b.kernel(n)
	k.mu.Lock()
	k.m[key] = err
	k.mu.Unlock()
	return err
}

func (b *Builder) buildNode(ctx context.Context, fps *fingerprints, kernels *kernelChecks, snap *config.Snapshot, n *config.Node) error {
	var errs []error
	check := func(kind string, err error) {
		if err != nil {
			b.m.errors.WithLabelValues(kind).Inc()
			errs = append(errs, err)
		}
	}
	check("kernel", kernels.check(b, n))
	if n.TwoStage() { // chunked.go, modules.go
		_, err := b.imageIndex(ctx, fps, n)
		check("image_index", err)
		_, err = b.kernelModules(ctx, fps, n)
		check("modules", err)
	} else {
		_, err := b.image(ctx, fps, n)
		check("image", err)
	}
	_, err := b.overlay(ctx, fps, snap, n, systemOverlay, true)
	check("system", err)
	_, err = b.overlay(ctx, fps, snap, n, runtimeOverlay, true)
	check("runtime", err)
	return errors.Join(errs...)
}
