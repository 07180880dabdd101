// Package stage2 is the second stage of a two-stage boot (kernel command
// line wwimage=SHA256): wwclient, as /init, brings the node's NIC up, fetches
// the image index from the first server of wwserver= that answers and
// checks its sha256 against wwimage=, checks that the image fits in memory,
// fetches the chunks (a few at a time), checks each one's sha256 as it
// arrives and unpacks them in order into the new root, posting its
// progress to the server. See package chunkimage for the format.
//
// Failures are retried with backoff, moving on to the next server: a
// dropped connection resumes where it stopped (at the chunk, and inside the
// chunk with a Range request), a corrupt chunk is fetched again from the
// next server. Every network wait has a timeout.
package stage2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
	"github.com/wwcluster/ww/wwclient/backoff"
)

// Defaults of FetchOptions.
const (
	DefaultParallel    = 4
	DefaultRounds      = 8
	DefaultIdleTimeout = 30 * time.Second
	DefaultBackoffMin  = 500 * time.Millisecond
	DefaultBackoffMax  = 15 * time.Second
)

// FetchOptions configure a Fetcher.
type FetchOptions struct {
	// Servers are the base URLs of wwserver=, in order (the one that served
	// the boot first).
	Servers []*url.URL
	MAC     string // wwid=: the node's MAC, for the index URL
	Digest  string // wwimage=: the index's sha256
	Client  *http.Client
	// Parallel chunks are fetched at once (default 4); at most 2×Parallel
	// fetched chunks wait to be unpacked, which bounds the memory to about
	// 2×Parallel compressed chunks plus one uncompressed.
	Parallel int
	// Rounds: a chunk (or the index) is given up after failing this many
	// times on every server (default 8: with the backoff, about a minute
	// with one server).
	Rounds int
	// IdleTimeout fails an attempt that receives nothing for this long,
	// headers included (default 30 s).
	IdleTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait between attempts (default
	// 0.5 s and 15 s, exponential with jitter).
	BackoffMin, BackoffMax time.Duration
	Log                    *slog.Logger
}

// Fetcher fetches one image. It sticks with the server that answered last
// and moves on in wwserver= order when one fails.
type Fetcher struct {
	o       FetchOptions
	current atomic.Int32 // index into o.Servers of the server in use
	// indexed[i]: server i served the index wwimage= names. A server is
	// asked for it before its first chunk: a server builds an image's
	// chunks when its index is asked for, so a peer the node fails over
	// to mid-image may not hold them yet.
	indexMu sync.Mutex
	indexed []bool
	// sleep waits between attempts (a seam: tests record the waits).
	sleep func(ctx context.Context, d time.Duration) error
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NewFetcher checks o and fills in defaults.
func NewFetcher(o FetchOptions) (*Fetcher, error) {
	if len(o.Servers) == 0 {
		return nil, errors.New("image fetch: no server (wwserver=)")
	}
	if !chunkimage.ValidDigest(o.Digest) {
		return nil, fmt.Errorf("image fetch: wwimage=%q is not a sha256", o.Digest)
	}
	if o.MAC == "" {
		return nil, errors.New("image fetch: no node MAC (wwid=)")
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if o.Rounds <= 0 {
		o.Rounds = DefaultRounds
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(DefaultBackoffMax, o.BackoffMin)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Fetcher{o: o, indexed: make([]bool, len(o.Servers)), sleep: sleepCtx}, nil
}

// base is server i's base URL (no trailing slash).
func (f *Fetcher) base(i int) string {
	return strings.TrimSuffix(f.o.Servers[i].String(), "/")
}

func (f *Fetcher) host(i int) string { return f.o.Servers[i].Host }

// retrier walks the servers from the current one, waiting with backoff
// after each failure, until rounds × servers attempts have failed.
type retrier struct {
	f        *Fetcher
	server   int
	failures int
	bo       backoff.Backoff
	last     error
}

func (f *Fetcher) retrier() *retrier {
	return &retrier{f: f, server: int(f.current.Load()), bo: backoff.Backoff{Min: f.o.BackoffMin, Max: f.o.BackoffMax, Rand: backoff.NewRand()}}
}

// fail notes a failed attempt, moves to the next server and waits; false:
// give up (err says why).
func (r *retrier) fail(ctx context.Context, err error) (bool, error) {
	r.last = err
	r.failures++
	if r.failures >= r.f.o.Rounds*len(r.f.o.Servers) {
		return false, fmt.Errorf("gave up after %d attempts on %d server(s): %w", r.failures, len(r.f.o.Servers), err)
	}
	r.server = (r.server + 1) % len(r.f.o.Servers)
	if err := r.f.sleep(ctx, r.bo.Next()); err != nil {
		return false, err
	}
	return true, nil
}

// ok makes the server that just answered the one to use next.
func (r *retrier) ok() {
	if old := r.f.current.Swap(int32(r.server)); int(old) != r.server {
		r.f.o.Log.Info("image: switched server", "from", r.f.host(int(old)), "to", r.f.host(r.server))
	}
	r.bo.Reset()
}

// Index fetches the index from the first server that answers and whose
// index has the digest wwimage= names.
func (f *Fetcher) Index(ctx context.Context) (*chunkimage.Index, error) {
	r := f.retrier()
	for {
		ix, err := f.indexFrom(ctx, r.server)
		if err == nil {
			f.setIndexed(r.server)
			r.ok()
			return ix, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		f.o.Log.Warn("image index", "server", f.host(r.server), "err", err)
		more, gerr := r.fail(ctx, err)
		if !more {
			return nil, fmt.Errorf("image index: %w", gerr)
		}
	}
}

func (f *Fetcher) indexFrom(ctx context.Context, server int) (*chunkimage.Index, error) {
	body, err := f.get(ctx, nodeapi.ImageIndex.URL(f.base(server), url.PathEscape(f.o.MAC)), 0)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	if body.status != http.StatusOK {
		return nil, body.httpError()
	}
	data, err := io.ReadAll(io.LimitReader(body, chunkimage.MaxIndexSize+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	ix, err := chunkimage.Parse(data, f.o.Digest)
	if errors.Is(err, chunkimage.ErrDigest) {
		return nil, fmt.Errorf("this server has another image than the boot started with (its index is not wwimage=%s; rebuilt meanwhile?): %w", f.o.Digest[:12], err)
	}
	return ix, err
}

func (f *Fetcher) setIndexed(server int) {
	f.indexMu.Lock()
	defer f.indexMu.Unlock()
	f.indexed[server] = true
}

// ensureIndexed asks server for the index once before its first chunk (it
// builds the image's chunks there if it has not yet); the lock makes the
// workers wait for one request instead of sending one each.
func (f *Fetcher) ensureIndexed(ctx context.Context, server int) error {
	f.indexMu.Lock()
	defer f.indexMu.Unlock()
	if f.indexed[server] {
		return nil
	}
	if _, err := f.indexFrom(ctx, server); err != nil {
		return fmt.Errorf("index before chunks: %w", err)
	}
	f.indexed[server] = true
	return nil
}

// response is a GET's answer whose body fails when idle too long.
type response struct {
	*http.Response
	status int
	idle   *idleReader
	cancel context.CancelFunc
}

func (r *response) Read(p []byte) (int, error) { return r.idle.Read(p) }

func (r *response) Close() error {
	r.idle.stop()
	err := r.Body.Close()
	r.cancel()
	return err
}

func (r *response) httpError() error {
	msg, _ := io.ReadAll(io.LimitReader(r.Body, 512))
	return fmt.Errorf("%s: %s", r.Response.Status, strings.TrimSpace(string(msg)))
}

// idleReader cancels the request when no byte arrived for the idle timeout.
type idleReader struct {
	r       io.Reader
	timeout time.Duration
	timer   *time.Timer
}

func (i *idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 {
		i.timer.Reset(i.timeout)
	}
	return n, err
}

func (i *idleReader) stop() { i.timer.Stop() }

// get sends a GET (with Range: bytes=from- when from > 0). The returned
// body fails once nothing arrived for IdleTimeout (the headers too).
func (f *Fetcher) get(ctx context.Context, u string, from int64) (*response, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	idle := time.AfterFunc(f.o.IdleTimeout, func() {
		cancel(fmt.Errorf("nothing received for %s", f.o.IdleTimeout))
	})
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		idle.Stop()
		cancel(nil)
		return nil, err
	}
	if from > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(from, 10)+"-")
	}
	resp, err := f.o.Client.Do(req)
	if err != nil {
		idle.Stop()
		if c := context.Cause(rctx); c != nil && ctx.Err() == nil {
			err = c
		}
		cancel(nil)
		return nil, err
	}
	idle.Reset(f.o.IdleTimeout)
	return &response{Response: resp, status: resp.StatusCode,
		idle:   &idleReader{r: &causeReader{r: resp.Body, ctx: rctx, parent: ctx}, timeout: f.o.IdleTimeout, timer: idle},
		cancel: func() { cancel(nil) }}, nil
}

// causeReader reports the idle timeout instead of "context canceled".
type causeReader struct {
	r           io.Reader
	ctx, parent context.Context
}

func (c *causeReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && c.parent.Err() == nil {
		if cause := context.Cause(c.ctx); cause != nil {
			err = cause
		}
	}
	return n, err
}

// chunk fetches one chunk and verifies it, resuming a dropped transfer with
// Range and moving to the next server after a failure or a bad chunk.
func (f *Fetcher) chunk(ctx context.Context, c chunkimage.Chunk) ([]byte, error) {
	buf := make([]byte, 0, c.Size)
	r := f.retrier()
	for {
		err := f.ensureIndexed(ctx, r.server)
		if err == nil {
			err = f.chunkFrom(ctx, r.server, c, &buf)
		}
		if err == nil {
			if err = c.Verify(buf); err == nil {
				r.ok()
				return buf, nil
			}
			f.o.Log.Warn("corrupt chunk; fetching it again from the next server", "server", f.host(r.server), "err", err)
			buf = buf[:0]
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !errors.Is(err, chunkimage.ErrDigest) {
			f.o.Log.Warn("chunk fetch", "chunk", c.SHA256[:12], "server", f.host(r.server), "have", len(buf), "of", c.Size, "err", err)
		}
		more, gerr := r.fail(ctx, err)
		if !more {
			return nil, fmt.Errorf("chunk %s: %w", c.SHA256[:12], gerr)
		}
	}
}

// chunkFrom appends the rest of chunk c (from len(*buf)) from one server.
// Bytes received before an error stay in *buf.
func (f *Fetcher) chunkFrom(ctx context.Context, server int, c chunkimage.Chunk, buf *[]byte) error {
	from := int64(len(*buf))
	resp, err := f.get(ctx, nodeapi.ChunkURL(f.base(server), c.SHA256), from)
	if err != nil {
		return err
	}
	defer resp.Close()
	switch resp.status {
	case http.StatusOK:
		if from > 0 { // Range ignored: start over
			*buf = (*buf)[:0]
		}
	case http.StatusPartialContent:
		start, total, err := contentRange(resp.Header.Get("Content-Range"))
		if err != nil || start != from || total != c.Size {
			*buf = (*buf)[:0]
			return fmt.Errorf("unexpected Content-Range %q for bytes %d- of %d", resp.Header.Get("Content-Range"), from, c.Size)
		}
	default:
		return resp.httpError()
	}
	for int64(len(*buf)) < c.Size {
		b := *buf
		n, err := resp.Read(b[len(b):cap(b)])
		*buf = b[:len(b)+n]
		if err == io.EOF {
			if int64(len(*buf)) < c.Size {
				return fmt.Errorf("connection closed at byte %d of %d: %w", len(*buf), c.Size, io.ErrUnexpectedEOF)
			}
			break
		}
		if err != nil {
			return fmt.Errorf("at byte %d of %d: %w", len(*buf), c.Size, err)
		}
	}
	return nil
}

// contentRange parses "bytes START-END/TOTAL".
func contentRange(s string) (start, total int64, err error) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, errors.New("not a byte range")
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, errors.New("no total")
	}
	a, _, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, errors.New("no range")
	}
	if start, err = strconv.ParseInt(a, 10, 64); err != nil {
		return 0, 0, err
	}
	if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
		return 0, 0, err
	}
	return start, total, nil
}

// Stream is the image's uncompressed stream: chunks are fetched ahead by
// Parallel workers, verified, and decompressed in order as Read asks.
type Stream struct {
	f      *Fetcher
	ix     *chunkimage.Index
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	slots  []chan fetched // chunk i arrives in slots[i % len(slots)]
	ahead  chan struct{}  // a token per chunk dispatched and not yet consumed
	next   int            // the chunk Read takes next
	cur    []byte         // what is left of the current chunk
	raw    []byte         // decompression buffer
	done   atomic.Int64   // uncompressed bytes handed out
	err    error
	// Progress, when set before the first Read, is called after each chunk
	// with the bytes handed out so far and the total.
	Progress func(done, total int64)
}

type fetched struct {
	data []byte
	err  error
}

// Stream starts fetching ix's chunks. Close it.
func (f *Fetcher) Stream(ctx context.Context, ix *chunkimage.Index) *Stream {
	ctx, cancel := context.WithCancel(ctx)
	window := 2 * f.o.Parallel
	s := &Stream{f: f, ix: ix, ctx: ctx, cancel: cancel, slots: make([]chan fetched, window), ahead: make(chan struct{}, window)}
	for i := range s.slots {
		s.slots[i] = make(chan fetched, 1)
	}
	jobs := make(chan int)
	s.wg.Add(1)
	go func() { // dispatch in order, at most window ahead of Read
		defer s.wg.Done()
		defer close(jobs)
		for i := range ix.Chunks {
			select {
			case s.ahead <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range min(f.o.Parallel, max(len(ix.Chunks), 1)) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for i := range jobs {
				data, err := f.chunk(ctx, ix.Chunks[i])
				s.slots[i%window] <- fetched{data, err} // free: chunk i-window was consumed
			}
		}()
	}
	return s
}

// Done is the uncompressed bytes handed out so far.
func (s *Stream) Done() int64 { return s.done.Load() }

// Read implements io.Reader.
func (s *Stream) Read(p []byte) (int, error) {
	for len(s.cur) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		if s.next == len(s.ix.Chunks) {
			return 0, io.EOF
		}
		var r fetched
		select {
		case r = <-s.slots[s.next%len(s.slots)]:
		case <-s.ctx.Done():
			s.err = s.ctx.Err()
			return 0, s.err
		}
		if r.err != nil {
			s.err = r.err
			return 0, s.err
		}
		c := s.ix.Chunks[s.next]
		raw, err := c.Decompress(s.raw, r.data)
		if err != nil {
			s.err = fmt.Errorf("chunk %d: %w", s.next, err)
			return 0, s.err
		}
		s.raw, s.cur = raw, raw
		s.next++
		<-s.ahead // the next chunk may be dispatched
		d := s.done.Add(c.USize)
		if s.Progress != nil {
			s.Progress(d, s.ix.Size)
		}
	}
	n := copy(p, s.cur)
	s.cur = s.cur[n:]
	return n, nil
}

// Close stops the workers and waits for them.
func (s *Stream) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// NewDownloadClient is an HTTP client for chunk downloads: no proxy, no
// transparent decompression, a connection per worker kept alive between
// chunks, bounded dial and header waits (bodies: FetchOptions.IdleTimeout).
func NewDownloadClient(parallel int) *http.Client {
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		DisableCompression:    true,
		MaxIdleConns:          parallel + 2,
		MaxIdleConnsPerHost:   parallel + 2,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}}
}
