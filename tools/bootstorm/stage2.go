package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
	"github.com/wwcluster/ww/wwclient/stage2"
)

// stage2Parallel is wwclient's default: chunks fetched at once per node.
const stage2Parallel = stage2.DefaultParallel

// stage2Boot plays wwclient's second stage of a two-stage boot (wwimage=
// digest on the kernel line) as wwclient/stage2 fetches it: the index
// through stage2.Fetcher itself (checked against wwimage=), then every chunk
// it lists, Parallel at a time on kept-alive connections, each checked
// against its sha256 when cfg.Verify (not decompressed or unpacked: that is
// the node's CPU, not the server's), with progress posts through
// stage2.Reporter. With cfg.ImageBytes > 0 it stops after the chunks that
// make up that many compressed bytes (a slice). Failures are not retried:
// the simulator's strict reading.
func (r *runner) stage2Boot(ctx context.Context, mac string, src net.IP, base, digest string) error {
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("wwserver=%q: %w", base, err)
	}
	parallel := max(r.cfg.Stage2Parallel, 1)
	dl := newHTTPClientConns(src, false, r.cfg.RequestTimeout, parallel+2)
	defer dl.CloseIdleConnections()
	post := newHTTPClient(src, r.cfg.Secure, r.cfg.RequestTimeout)
	defer post.CloseIdleConnections()
	f, err := stage2.NewFetcher(stage2.FetchOptions{Servers: []*url.URL{u}, MAC: mac, Digest: digest, Client: dl,
		Parallel: parallel, Rounds: 1, IdleTimeout: r.cfg.RequestTimeout})
	if err != nil {
		r.stats.Done(stageIndex, 0, 0, err)
		return fmt.Errorf("%s: %w", stageIndex, err)
	}
	t := time.Now()
	ix, err := f.Index(ctx)
	if err != nil {
		r.stats.Done(stageIndex, time.Since(t), 0, err)
		return fmt.Errorf("%s: %s", stageIndex, reason(err))
	}
	r.stats.Done(stageIndex, time.Since(t), 0, nil)
	chunks := sliceChunks(ix.Chunks, r.cfg.ImageBytes)
	var total int64
	for _, c := range chunks {
		total += c.USize
	}

	rep := f.NewReporter(post, "", 0)
	rctx, stopRep := context.WithCancel(ctx)
	var repDone sync.WaitGroup
	repDone.Go(func() { rep.Run(rctx) })
	t = time.Now()
	byDigest := func(i int) (string, http.Header) { return nodeapi.ChunkURL(base, chunks[i].SHA256), nil }
	n, err := r.fetchChunks(ctx, dl, chunks, byDigest, parallel, func(done int64) { rep.Update(done, total) })
	stopRep()
	repDone.Wait()
	r.stats.Done(stageImage, time.Since(t), n, err)
	if err != nil {
		return fmt.Errorf("%s: %s", stageImage, reason(err))
	}
	t = time.Now()
	err = rep.Final(ctx, stage2.Report{Done: total, Total: total})
	r.stats.Done(stageProgress, time.Since(t), 0, err)
	if err != nil {
		return fmt.Errorf("%s: %s", stageProgress, reason(err))
	}
	return nil
}

// sliceChunks is the leading chunks that hold at least limit compressed
// bytes (all of them for limit <= 0).
func sliceChunks(cs []chunkimage.Chunk, limit int64) []chunkimage.Chunk {
	if limit <= 0 {
		return cs
	}
	var n int64
	for i, c := range cs {
		if n += c.Size; n >= limit {
			return cs[:i+1]
		}
	}
	return cs
}

// chunkSource is where chunk i is read: a URL and request header.
type chunkSource func(i int) (string, http.Header)

// fetchChunks gets chunks with parallel workers and returns the bytes
// received; the first failure stops the others. progress gets the
// uncompressed bytes of the chunks done so far.
func (r *runner) fetchChunks(ctx context.Context, c *http.Client, chunks []chunkimage.Chunk, where chunkSource,
	parallel int, progress func(done int64)) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, got, done atomic.Int64
	var wg sync.WaitGroup
	for range min(parallel, len(chunks)) {
		wg.Go(func() {
			var h hash.Hash
			if r.cfg.Verify {
				h = sha256.New()
			}
			for {
				i := next.Add(1) - 1
				if i >= int64(len(chunks)) || ctx.Err() != nil {
					return
				}
				u, hdr := where(int(i))
				n, err := r.fetchChunk(ctx, c, u, hdr, chunks[i], h)
				got.Add(n)
				if err != nil {
					cancel(err)
					return
				}
				progress(done.Add(chunks[i].USize))
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && err != context.Canceled {
		return got.Load(), err
	}
	return got.Load(), ctx.Err()
}

// fetchChunk gets one chunk; with h it checks the bytes' sha256 as they
// arrive (no buffer).
func (r *runner) fetchChunk(ctx context.Context, c *http.Client, u string, hdr http.Header, ch chunkimage.Chunk, h hash.Hash) (int64, error) {
	w := io.Discard
	if h != nil {
		h.Reset()
		w = h
	}
	n, _, err := httpGet(ctx, c, u, hdr, w, r.cfg.DownloadTimeout)
	if err != nil {
		return n, fmt.Errorf("chunk %s: %w", ch.SHA256[:12], err)
	}
	if n != ch.Size {
		return n, fmt.Errorf("chunk %s: %w: %d of %d bytes", ch.SHA256[:12], errShort, n, ch.Size)
	}
	if h != nil {
		if got := hex.EncodeToString(h.Sum(nil)); got != ch.SHA256 {
			return n, fmt.Errorf("chunk %s: sha256 %s: %w", ch.SHA256[:12], got[:12], chunkimage.ErrDigest)
		}
	}
	return n, nil
}

// rawBoot is raw mode: the node fetches its index (mirrored, from nginx),
// then reads the same bytes as its chunks, in the same requests
// (Stage2Parallel at a time on kept-alive connections), but as byte ranges
// of one static file (the chunks concatenated, from the page cache): the
// rate the network and a trivial server give for those bytes and that
// concurrency. It counts as booted when it has them.
func (r *runner) rawBoot(ctx context.Context, n simNode) {
	t0 := time.Now()
	err := r.rawFetch(ctx, n)
	r.stats.Done(stageBoot, time.Since(t0), 0, err)
	if err != nil {
		r.stats.Failed()
		return
	}
	r.stats.Booted(time.Now())
}

func (r *runner) rawFetch(ctx context.Context, n simNode) error {
	if n.IP != nil && r.addrs != nil {
		if err := r.addrs(n.IP); err != nil {
			return fmt.Errorf("add address %s: %w", n.IP, err)
		}
	}
	parallel := max(r.cfg.Stage2Parallel, 1)
	c := newHTTPClientConns(n.IP, false, r.cfg.RequestTimeout, parallel+2)
	defer c.CloseIdleConnections()
	t := time.Now()
	var index bytes.Buffer
	_, _, err := httpGet(ctx, c, nodeapi.ImageIndex.URL(r.cfg.Base, n.MAC.String()), nil,
		&limitedWriter{w: &index, n: chunkimage.MaxIndexSize}, r.cfg.DownloadTimeout)
	var ix *chunkimage.Index
	if err == nil {
		ix, err = chunkimage.Parse(index.Bytes(), chunkimage.Digest(index.Bytes()))
	}
	r.stats.Done(stageIndex, time.Since(t), 0, err)
	if err != nil {
		return fmt.Errorf("%s: %w", stageIndex, err)
	}
	offsets := make([]int64, len(ix.Chunks)) // in the raw file: every chunk, in index order
	var off int64
	for i, ch := range ix.Chunks {
		offsets[i] = off
		off += ch.Size
	}
	chunks := sliceChunks(ix.Chunks, r.cfg.ImageBytes)
	u := r.cfg.Base + r.cfg.RawPath
	byRange := func(i int) (string, http.Header) {
		return u, http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", offsets[i], offsets[i]+chunks[i].Size-1)}}
	}
	t = time.Now()
	got, err := r.fetchChunks(ctx, c, chunks, byRange, parallel, func(int64) {})
	r.stats.Done(stageRaw, time.Since(t), got, err)
	if err != nil {
		return fmt.Errorf("%s: %w", stageRaw, err)
	}
	return nil
}
