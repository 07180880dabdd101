package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wwcluster/ww/server/chunkstore"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/nodeapi/chunkimage"
)

// Chunked images (two-stage boot, see package chunkimage): the same newc
// stream as Image, cut into zstd chunks stored once under
// state/chunks/sha256/DIGEST and listed by an index,
// state/chunks/index/KEY.json, KEY being the image's cache key. The index
// is written (fsynced, renamed) only after every chunk it names is durable,
// so an index found on disk is adopted by a new process (after a stat of
// each chunk).

// ImageIndexName is the file name recorded as sent for an image index.
const ImageIndexName = "__IMAGE__.index"

const (
	chunksDir     = "chunks"
	chunkStoreDir = "sha256"
	chunkIndexDir = "index"
	indexSuffix   = ".json"
)

// ImageIndex is a node image's chunk index.
type ImageIndex struct {
	Digest  string // hex sha256 of Data: the image's digest (wwimage=)
	Data    []byte // the index as served; shared, do not modify
	Index   *chunkimage.Index
	ModTime time.Time
	key     string
	used    atomic.Int64 // unix ns of the last lookup
}

// chunked is the Builder's chunked-image state, made on first use.
type chunked struct {
	once   sync.Once
	store  *chunkstore.Store
	err    error
	mu     sync.Mutex
	byKey  map[string]*ImageIndex
	refs   map[string]int                  // chunk digest → remembered indexes naming it
	builds freshGroup[string, *ImageIndex] // shareRunning: a build is shared
}

func (b *Builder) chunkState() (*chunked, error) {
	c := &b.chunks
	c.once.Do(func() {
		c.byKey = map[string]*ImageIndex{}
		c.refs = map[string]int{}
		c.builds.shareRunning = true
		if err := os.MkdirAll(filepath.Join(b.state, chunksDir, chunkIndexDir), 0o700); err != nil {
			c.err = fmt.Errorf("build: create chunk index dir: %w", err)
			return
		}
		c.store, c.err = chunkstore.Open(filepath.Join(b.state, chunksDir, chunkStoreDir))
	})
	return c, c.err
}

func (c *chunked) lookup(key string) *ImageIndex {
	c.mu.Lock()
	defer c.mu.Unlock()
	ix := c.byKey[key]
	if ix != nil {
		ix.used.Store(time.Now().UnixNano())
	}
	return ix
}

// remember keeps ix in memory; its chunks count as referenced (Prune keeps
// them) from now on.
func (c *chunked) remember(ix *ImageIndex) {
	ix.used.Store(time.Now().UnixNano())
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.byKey[ix.key]; old != nil {
		c.unref(old)
	}
	c.byKey[ix.key] = ix
	for _, ch := range ix.Index.Chunks {
		c.refs[ch.SHA256]++
	}
}

// unref drops ix's chunk references; c.mu is held.
func (c *chunked) unref(ix *ImageIndex) {
	for _, ch := range ix.Index.Chunks {
		if c.refs[ch.SHA256]--; c.refs[ch.SHA256] <= 0 {
			delete(c.refs, ch.SHA256)
		}
	}
}

func (c *chunked) referenced(digest string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refs[digest] > 0
}

// ImageIndex returns the chunk index of the node's image, building the
// chunks once per image content (shared by every node using the image,
// and by two-stage and single-stage nodes alike in its stream).
func (b *Builder) ImageIndex(ctx context.Context, snap *config.Snapshot, n *config.Node) (*ImageIndex, error) {
	ix, err := b.imageIndex(ctx, b.newFingerprints(), n)
	if err != nil {
		b.m.errors.WithLabelValues("image_index").Inc()
	}
	return ix, err
}

func (b *Builder) imageIndex(ctx context.Context, fps *fingerprints, n *config.Node) (*ImageIndex, error) {
	if n == nil {
		return nil, errors.New("build image index: no node")
	}
	c, err := b.chunkState()
	if err != nil {
		return nil, err
	}
	dir, err := b.rootfs(n)
	if err != nil {
		return nil, err
	}
	fp, err := fps.get(ctx, dir, treeImage)
	if err != nil {
		return nil, b.treeError("image", n.Image, "images/"+n.Image+"/rootfs", err)
	}
	key := hashKey("ww-chunked/1", chunkstore.Params(), fp.hash)
	if ix := c.lookup(key); ix != nil {
		b.m.hits.WithLabelValues(kindChunked).Inc()
		return ix, nil
	}
	built := false
	ix, err := c.builds.Do(ctx, key, func() (*ImageIndex, error) {
		if ix := c.lookup(key); ix != nil {
			return ix, nil
		}
		if ix := b.adoptIndex(c, key); ix != nil {
			return ix, nil
		}
		built = true
		return b.buildIndex(c, key, dir)
	})
	if err != nil {
		return nil, fmt.Errorf("image %q: chunks: %w", n.Image, err)
	}
	if built {
		b.m.misses.WithLabelValues(kindChunked).Inc()
	} else {
		b.m.hits.WithLabelValues(kindChunked).Inc()
	}
	return ix, nil
}

// kindChunked is the metrics label of chunked image builds.
const kindChunked = "image_chunked"

func (b *Builder) indexPath(key string) string {
	return filepath.Join(b.state, chunksDir, chunkIndexDir, key+indexSuffix)
}

// adoptIndex takes an index an earlier process built, if it is there and
// every chunk it names is too.
func (b *Builder) adoptIndex(c *chunked, key string) *ImageIndex {
	p := b.indexPath(key)
	data, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	parsed, err := chunkimage.Parse(data, "")
	if err != nil {
		b.log.Warn("chunked image index not usable; rebuilding", "index", p, "err", err)
		return nil
	}
	release := c.store.Pin(parsed) // Prune must not take a chunk between the check and remember
	defer release()
	if err := c.store.Has(parsed); err != nil {
		b.log.Warn("chunked image index not usable; rebuilding", "index", p, "err", err)
		return nil
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil
	}
	ix := &ImageIndex{Digest: chunkimage.Digest(data), Data: data, Index: parsed, ModTime: fi.ModTime(), key: key}
	c.remember(ix)
	return ix
}

// buildIndex streams the image archive into the chunk store and writes
// the index. A source file changing during the build makes it start over
// (as for the gzip image).
func (b *Builder) buildIndex(c *chunked, key, dir string) (*ImageIndex, error) {
	b.slots <- struct{}{}
	defer func() { <-b.slots }()
	if b.beforeBuild != nil {
		b.beforeBuild(kind{name: kindChunked})
	}
	start := time.Now()
	var (
		ix      *chunkimage.Index
		st      chunkstore.Stats
		release func()
		err     error
	)
	for try := 0; try < maxBuildTries; try++ {
		if try > 0 {
			b.log.Debug("source changed during build; again", "kind", kindChunked, "err", err)
			time.Sleep(time.Duration(try) * 10 * time.Millisecond)
		}
		ix, st, release, err = b.chunkOnce(c, dir)
		if !errors.Is(err, errChanged) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	defer release() // after the index is remembered: Prune keeps its chunks
	data, digest, err := ix.Marshal()
	if err != nil {
		return nil, err
	}
	p := b.indexPath(key)
	if err := writeFileSync(p, data); err != nil {
		return nil, fmt.Errorf("write chunk index: %w", err)
	}
	out := &ImageIndex{Digest: digest, Data: data, Index: ix, ModTime: time.Now(), key: key}
	if fi, err := os.Stat(p); err == nil {
		out.ModTime = fi.ModTime()
	}
	c.remember(out)
	d := time.Since(start)
	b.m.builds.WithLabelValues(kindChunked).Inc()
	b.m.seconds.WithLabelValues(kindChunked).Observe(d.Seconds())
	b.m.bytes.Add(float64(st.Written + int64(len(data))))
	b.built.Add(1)
	b.written.Add(st.Written + int64(len(data)))
	b.log.Log(context.Background(), slog.LevelInfo, "built", "kind", kindChunked, "key", key[:16], "digest", digest[:16],
		"bytes", ix.Size, "chunks", st.Chunks, "stored", st.Stored, "reused", st.Reused, "written", st.Written,
		"took", d.Round(time.Millisecond))
	return out, nil
}

// chunkOnce runs one build: writeImage into a pipe, the chunker reading it.
func (b *Builder) chunkOnce(c *chunked, dir string) (*chunkimage.Index, chunkstore.Stats, func(), error) {
	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		err := writeImage(pw, dir)
		pw.CloseWithError(err) // nil: EOF for the chunker
		werr <- err
	}()
	ix, st, release, err := c.store.Build(context.Background(), pr, chunkstore.BuildOptions{})
	pr.CloseWithError(errors.New("chunk build ended")) // unblocks the writer if Build stopped early
	if wErr := <-werr; wErr != nil {
		if release != nil {
			release()
		}
		return nil, st, nil, wErr
	}
	return ix, st, release, err
}

// writeFileSync writes data to path atomically and durably.
func writeFileSync(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), tmpPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// Chunk returns the stored chunk with this digest (any image's). A name
// that is not a digest, or a chunk the store does not have, is ErrNotFound.
func (b *Builder) Chunk(digest string) (*Artifact, error) {
	c, err := b.chunkState()
	if err != nil {
		return nil, err
	}
	f, fi, err := c.store.OpenChunk(digest)
	if errors.Is(err, chunkstore.ErrNotFound) || errors.Is(err, chunkstore.ErrBadDigest) {
		return nil, &kindError{kind: ErrNotFound, msg: "chunk", err: err}
	}
	if err != nil {
		return nil, err
	}
	a := &Artifact{
		Name:    digest,
		ETag:    `"` + digest + `"`,
		Size:    fi.Size(),
		ModTime: fi.ModTime(),
		Parts:   []string{f.Name()},
		sizes:   []int64{fi.Size()},
	}
	// The first Open serves this file (checked by OpenChunk, which marked it
	// served: Prune leaves it) instead of opening it again.
	a.opened.Store(f)
	return a, nil
}

// pruneChunks removes index files and chunks no index in use needs: an
// index not looked up since cutoff is forgotten, then files older than the
// cutoff that no remembered index names are removed (nor chunks a build
// in flight uses, or served since the cutoff: see chunkstore.Prune).
func (b *Builder) pruneChunks(cutoff time.Time) (int, error) {
	c, err := b.chunkState()
	if err != nil {
		return 0, err
	}
	keys := map[string]bool{} // index keys
	c.mu.Lock()
	for key, ix := range c.byKey {
		if time.Unix(0, ix.used.Load()).Before(cutoff) {
			delete(c.byKey, key)
			c.unref(ix)
			continue
		}
		keys[key] = true
	}
	c.mu.Unlock()
	removed := 0
	var errs []error
	dir := filepath.Join(b.state, chunksDir, chunkIndexDir)
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, de := range ents {
		name := de.Name()
		if !de.Type().IsRegular() || !(strings.HasSuffix(name, indexSuffix) || strings.HasPrefix(name, tmpPrefix)) {
			continue
		}
		if keys[strings.TrimSuffix(name, indexSuffix)] {
			continue
		}
		fi, err := de.Info()
		if err != nil || fi.ModTime().After(cutoff) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err == nil {
			removed++
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	n, err := c.store.Prune(cutoff, c.referenced)
	removed += n
	if err != nil {
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

// ImageDigest is the image digest a two-stage node's boot script names (""
// for other nodes), for one-off commands (wwserver render): a Builder with
// o builds the chunked image, or finds it built, first.
func ImageDigest(ctx context.Context, o Options, snap *config.Snapshot, n *config.Node) (string, error) {
	if !n.TwoStage() {
		return "", nil
	}
	b, err := New(o)
	if err != nil {
		return "", err
	}
	defer b.Close()
	ix, err := b.ImageIndex(ctx, snap, n)
	if err != nil {
		return "", err
	}
	return ix.Digest, nil
}
