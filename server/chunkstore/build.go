package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"

	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
)

// Chunking parameters. They are part of Params and so of every build cache
// key: changing one rebuilds every chunked image.
const (
	// Polynomial is the Rabin polynomial of the chunker (restic's example
	// polynomial: irreducible, degree 53). Every server must use the same
	// one for chunks to be shared across image versions and servers.
	Polynomial = chunker.Pol(0x3DA3358B4DC173)
	// MinChunk and MaxChunk bound a chunk's uncompressed size; AverageBits
	// sets the average (2^20 = 1 MiB).
	MinChunk    = 512 << 10
	MaxChunk    = 8 << 20
	AverageBits = 20
	// Level is the zstd level: SpeedDefault (zstd level 3).
	Level = zstd.SpeedDefault
)

// Params identifies the chunking and compression settings, for cache keys.
func Params() string {
	return "rabin-" + strconv.FormatUint(uint64(Polynomial), 16) + "-" + strconv.Itoa(MinChunk) + "-" +
		strconv.Itoa(MaxChunk) + "-" + strconv.Itoa(AverageBits) + "-zstd" + strconv.Itoa(int(Level))
}

// BuildOptions tune Build.
type BuildOptions struct {
	// Workers compress chunks concurrently; default GOMAXPROCS. Memory is
	// about (2 × Workers + 2) × 8 MiB.
	Workers int
}

// Stats says what a Build did.
type Stats struct {
	Chunks  int   // chunks in the index
	Stored  int   // chunk files written
	Reused  int   // chunks already in the store
	Written int64 // compressed bytes written
}

type job struct {
	seq int
	raw *[]byte
}

type result struct {
	seq    int
	chunk  chunkimage.Chunk
	stored bool
}

// Build reads an uncompressed image stream from r to its end, cuts it into
// chunks, stores each compressed chunk and returns the index. The chunks
// stay pinned (Prune leaves them) until release is called: publish the
// index first, then release. On error nothing needs releasing. The store
// is synced (syncfs) before Build returns.
func (s *Store) Build(ctx context.Context, r io.Reader, o BuildOptions) (ix *chunkimage.Index, st Stats, release func(), err error) {
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := newPipeline(s, workers, cancel)
	for range workers {
		b.wg.Add(1)
		go b.compress(ctx)
	}
	collected := make(chan struct{})
	go func() { defer close(collected); b.collect() }()
	total := b.cut(ctx, r)
	close(b.jobs)
	b.wg.Wait()
	close(b.results)
	<-collected
	return b.finish(ctx, total)
}

// pipeline is one Build: the reader cuts chunks into bufs-bounded
// jobs, workers compress and store them, the collector puts the results
// back in stream order.
type pipeline struct {
	s       *Store
	cancel  context.CancelFunc
	bufs    chan *[]byte // raw chunk buffers: taking one bounds the chunks in flight
	jobs    chan job
	results chan result
	wg      sync.WaitGroup

	errOnce  sync.Once
	firstErr error
	pinMu    sync.Mutex
	pinned   []string

	chunks []chunkimage.Chunk // written by collect only
	have   []bool
	st     Stats
}

func newPipeline(s *Store, workers int, cancel context.CancelFunc) *pipeline {
	// One buffer being filled, one per worker, one queued per worker.
	nbuf := 2*workers + 1
	b := &pipeline{s: s, cancel: cancel, bufs: make(chan *[]byte, nbuf), jobs: make(chan job, workers),
		results: make(chan result, nbuf)}
	for range nbuf {
		raw := make([]byte, 0, MaxChunk)
		b.bufs <- &raw
	}
	return b
}

func (b *pipeline) fail(err error) {
	b.errOnce.Do(func() { b.firstErr = err; b.cancel() })
}

// compress is one worker: each job's chunk is compressed as its own zstd
// frame, pinned and stored under its digest.
func (b *pipeline) compress(ctx context.Context) {
	defer b.wg.Done()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(Level), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(MaxChunk), zstd.WithZeroFrames(true))
	if err != nil {
		b.fail(fmt.Errorf("zstd encoder: %w", err))
		for j := range b.jobs { // keep the reader from blocking
			b.bufs <- j.raw
		}
		return
	}
	defer enc.Close()
	out := make([]byte, 0, MaxChunk+MaxChunk/128+4096)
	for j := range b.jobs {
		if ctx.Err() != nil {
			b.bufs <- j.raw
			continue
		}
		raw := *j.raw
		out = enc.EncodeAll(raw, out[:0])
		c := chunkimage.Chunk{SHA256: chunkimage.Digest(out), Size: int64(len(out)), USize: int64(len(raw))}
		b.bufs <- j.raw
		b.s.pin(c.SHA256)
		b.pinMu.Lock()
		b.pinned = append(b.pinned, c.SHA256)
		b.pinMu.Unlock()
		reused, err := b.s.put(c.SHA256, out)
		if err != nil {
			b.fail(err)
			continue
		}
		b.results <- result{seq: j.seq, chunk: c, stored: !reused}
	}
}

// collect puts the results in stream order and counts what was stored.
func (b *pipeline) collect() {
	for res := range b.results {
		for len(b.chunks) <= res.seq {
			b.chunks = append(b.chunks, chunkimage.Chunk{})
			b.have = append(b.have, false)
		}
		b.chunks[res.seq], b.have[res.seq] = res.chunk, true
		if res.stored {
			b.st.Stored++
			b.st.Written += res.chunk.Size
		} else {
			b.st.Reused++
		}
	}
}

// cut reads r to its end (or until the build fails), handing each
// content-defined chunk to the workers; it returns the bytes read.
func (b *pipeline) cut(ctx context.Context, r io.Reader) (total int64) {
	ch := chunker.NewWithBoundaries(r, Polynomial, MinChunk, MaxChunk)
	ch.SetAverageBits(AverageBits)
	for seq := 0; ; seq++ {
		var buf *[]byte
		select {
		case buf = <-b.bufs:
		case <-ctx.Done():
			return total
		}
		c, err := ch.Next((*buf)[:0])
		if err != nil {
			b.bufs <- buf
			if !errors.Is(err, io.EOF) {
				b.fail(fmt.Errorf("read image stream: %w", err))
			}
			return total
		}
		*buf = c.Data
		total += int64(len(c.Data))
		select {
		case b.jobs <- job{seq: seq, raw: buf}:
		case <-ctx.Done():
			b.bufs <- buf
			return total
		}
	}
}

func (b *pipeline) release() {
	b.pinMu.Lock()
	p := b.pinned
	b.pinned = nil
	b.pinMu.Unlock()
	b.s.unpin(p)
}

// finish checks that every chunk arrived, syncs the store and makes the
// index; on any error the chunks are unpinned.
func (b *pipeline) finish(ctx context.Context, total int64) (*chunkimage.Index, Stats, func(), error) {
	err := b.firstErr
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	for i, ok := range b.have {
		if err == nil && !ok {
			err = fmt.Errorf("chunk %d missing from the build", i)
		}
	}
	if err == nil {
		err = b.s.Sync()
	}
	if err != nil {
		b.release()
		return nil, Stats{}, nil, err
	}
	chunks := b.chunks
	if chunks == nil {
		chunks = []chunkimage.Chunk{}
	}
	st := b.st
	st.Chunks = len(chunks)
	ix := &chunkimage.Index{Version: chunkimage.Version, Format: chunkimage.Format, Compression: chunkimage.Compression,
		Size: total, Chunks: chunks}
	return ix, st, b.release, nil
}
