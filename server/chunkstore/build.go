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

	"github.com/wwcluster/ww/chunkimage"
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

	// Raw chunk buffers: one being filled, one per worker, one queued per
	// worker. Taking one from bufs bounds the chunks in flight.
	nbuf := 2*workers + 1
	bufs := make(chan *[]byte, nbuf)
	for range nbuf {
		b := make([]byte, 0, MaxChunk)
		bufs <- &b
	}
	jobs := make(chan job, workers)
	results := make(chan result, nbuf)

	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		pinMu    sync.Mutex
		pinned   []string
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(Level), zstd.WithEncoderConcurrency(1),
				zstd.WithWindowSize(MaxChunk), zstd.WithZeroFrames(true))
			if err != nil {
				fail(fmt.Errorf("zstd encoder: %w", err))
				return
			}
			defer enc.Close()
			out := make([]byte, 0, MaxChunk+MaxChunk/128+4096)
			for j := range jobs {
				if ctx.Err() != nil {
					bufs <- j.raw
					continue
				}
				raw := *j.raw
				out = enc.EncodeAll(raw, out[:0])
				c := chunkimage.Chunk{SHA256: chunkimage.Digest(out), Size: int64(len(out)), USize: int64(len(raw))}
				bufs <- j.raw
				s.pin(c.SHA256)
				pinMu.Lock()
				pinned = append(pinned, c.SHA256)
				pinMu.Unlock()
				reused, err := s.put(c.SHA256, out)
				if err != nil {
					fail(err)
					continue
				}
				results <- result{seq: j.seq, chunk: c, stored: !reused}
			}
		}()
	}

	// Collect results in stream order.
	var chunks []chunkimage.Chunk
	var have []bool
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for res := range results {
			for len(chunks) <= res.seq {
				chunks = append(chunks, chunkimage.Chunk{})
				have = append(have, false)
			}
			chunks[res.seq], have[res.seq] = res.chunk, true
			if res.stored {
				st.Stored++
				st.Written += res.chunk.Size
			} else {
				st.Reused++
			}
		}
	}()

	ch := chunker.NewWithBoundaries(r, Polynomial, MinChunk, MaxChunk)
	ch.SetAverageBits(AverageBits)
	seq := 0
	var total int64
read:
	for {
		var b *[]byte
		select {
		case b = <-bufs:
		case <-ctx.Done():
			break read
		}
		c, err := ch.Next((*b)[:0])
		if errors.Is(err, io.EOF) {
			bufs <- b
			break
		}
		if err != nil {
			bufs <- b
			fail(fmt.Errorf("read image stream: %w", err))
			break
		}
		*b = c.Data
		total += int64(len(c.Data))
		select {
		case jobs <- job{seq: seq, raw: b}:
			seq++
		case <-ctx.Done():
			bufs <- b
			break read
		}
	}
	close(jobs)
	wg.Wait()
	close(results)
	<-collected

	releaseFn := func() {
		pinMu.Lock()
		p := pinned
		pinned = nil
		pinMu.Unlock()
		s.unpin(p)
	}
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr == nil {
		for i, ok := range have {
			if !ok {
				firstErr = fmt.Errorf("chunk %d missing from the build", i)
				break
			}
		}
	}
	if firstErr == nil {
		firstErr = s.Sync()
	}
	if firstErr != nil {
		releaseFn()
		return nil, Stats{}, nil, firstErr
	}
	if chunks == nil {
		chunks = []chunkimage.Chunk{}
	}
	st.Chunks = len(chunks)
	ix = &chunkimage.Index{Version: chunkimage.Version, Format: chunkimage.Format, Compression: chunkimage.Compression,
		Size: total, Chunks: chunks}
	return ix, st, releaseFn, nil
}
