// Package build turns the served tree into the files nodes boot from, fast
// and never stale: the kernel (served in place from the image tree), and
// gzip-compressed newc cpio archives of images and overlays, kept in a
// content-addressed cache under the state directory.
//
// # Never stale
//
// Every call fingerprints the source trees it depends on (path, type and
// mode, owner, size, mtime, ctime, inode and symlink target of every entry)
// with a check that started after the call arrived, and derives cache keys
// from the fingerprints and the other inputs (node, server settings, the
// nodes' hash). An edit to nodes.toml, to an overlay file or to an image tree
// is therefore served on the next call. The check is a walk of the tree, or,
// for a tree under inotify watches that raised no event since its last walk,
// a barrier proving that every event queued before the call arrived has been
// handled (see treeWatcher): a hit on a 67,000-file image costs microseconds,
// not a walk. Files changed within the last second are also hashed by
// content, since file system clocks are coarse (see fingerprintTree).
// Concurrent callers share checks (a check is shared only by callers that
// arrived before it started) and builds (one build per key). The kernel is
// looked up in rootfs/boot on every call.
//
// # Build once, share
//
// What is the same for many nodes is built once and shared:
//
//   - an image per image content (state/images/KEY.img.gz), one gzip member
//     with one cpio archive, compressed on every core;
//   - the system and the runtime overlay are served the same way, as up to
//     three concatenated gzip members, each a complete cpio archive of the
//     node's merged overlays (the kernel and wwclient unpack them in order):
//     the plain (non-template) entries, keyed by the overlay trees only
//     (state/overlays/shared/KEY.img.gz); the templates that do not use
//     .Node, rendered once per overlay content and configuration
//     (state/overlays/rendered/KEY.img.gz); and the node's own templates
//     (state/overlays/node/KEY.img.gz). Empty members are left out.
//
// Whether a template may use .Node is decided by usesNode (conservative).
// The typical /etc/hosts over all nodes uses only .Nodes and .Server: it is
// rendered and stored once per nodes.toml generation, not once per node.
// The first two members are durable (fsynced, adopted by a new process);
// node members are cheap and rebuilt by each process, so BuildAll renders
// them (reporting template errors) without storing them.
//
// Overlays listed together are merged in order; for each output path the
// last overlay that has it wins (a template "x.ww" provides path "x"). Inside
// one overlay, "x.ww" wins over a plain "x".
//
// # Images
//
// The image archive holds rootfs/ except the contents of rootfs/boot/ (the
// empty directory is kept): the kernel is served on its own, and /boot of a
// distribution image mostly holds initrd images that would only take node
// memory (Warewulf excludes /boot for the same reason). Hard links are stored
// as separate files, device nodes and sockets are left out (devtmpfs
// provides /dev), FIFOs are kept.
//
// # Safety
//
// All source reads go through os.Root: a symlink in a tree is archived as a
// symlink and never followed, and no path through a symlinked directory can
// read outside the tree.
package artifact

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// File names sent for each stage.
const (
	ImageName   = "__IMAGE__.img.gz"
	SystemName  = "__SYSTEM__.img.gz"
	RuntimeName = "__RUNTIME__.img.gz"
)

const (
	templateSuffix = ".ww"
	imageBootDir   = "boot"
	cacheSuffix    = ".img.gz"
	tmpPrefix      = ".tmp-"
)

// Options configure a Builder.
type Options struct {
	Root       string // the served tree (images/, overlays/)
	StateDir   string // cache directory; default Root/state
	Log        *slog.Logger
	Registerer prometheus.Registerer // metrics; nil: not registered
	// MaxBuilds bounds builds running at once (each holds a gzip writer and
	// a file); default 2 × GOMAXPROCS. 10,000 nodes asking at once for
	// different overlays queue here instead of exhausting memory.
	MaxBuilds int
}

// Builder builds and caches artifacts. It is safe for concurrent use; make
// one per served tree.
type Builder struct {
	root  string
	state string
	log   *slog.Logger
	m     *metrics

	walks  freshGroup[string, fingerprint] // by tree directory
	watch  *treeWatcher                    // spares walks of unchanged trees
	hashes hashCache                       // content hashes of racy files
	builds freshGroup[string, partResult]  // by cache key; shareRunning
	slots  chan struct{}                   // bounds concurrent builds
	// beforeBuild, if set, is called as a build of a cache file starts (a
	// seam for tests).
	beforeBuild func(kind)

	mu    sync.Mutex
	parts map[string]*part // cache key → built file

	pruneMu sync.RWMutex // held for writing while Prune checks and deletes one file

	chunks chunked   // chunked images for the two-stage boot (chunked.go)
	arches archCache // kernel architectures by ETag (kernelarch.go)
	keys   keysMade  // the node set whose host keys all exist (hostkeys.go)

	tmplMu      sync.Mutex
	tmpls       map[[32]byte]*parsedTemplate // by name and content
	outputs     map[[32]byte][]byte          // outputs of templates not using .Node
	outputBytes int
	tmplUses    map[string]tmplUse  // by overlay fingerprint
	listings    map[string]*listing // by overlay set ident

	built   atomic.Int64 // cache files written
	reused  atomic.Int64 // parts found in the cache
	checked atomic.Int64 // per-node members rendered by BuildAll, not stored
	written atomic.Int64 // bytes written to the cache
}

// New makes a Builder for the tree at o.Root and creates the cache
// directories.
func New(o Options) (*Builder, error) {
	if o.Root == "" {
		return nil, errors.New("build: Options.Root is required")
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, fmt.Errorf("build: root %q: %w", o.Root, err)
	}
	state := o.StateDir
	if state == "" {
		state = filepath.Join(root, "state")
	}
	if state, err = filepath.Abs(state); err != nil {
		return nil, fmt.Errorf("build: state dir %q: %w", o.StateDir, err)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if err := os.MkdirAll(state, 0o755); err != nil {
		return nil, fmt.Errorf("build: create state dir: %w", err)
	}
	// The cache holds rendered overlays, which may hold secrets: owner only.
	for _, k := range kinds {
		if err := os.MkdirAll(filepath.Join(state, k.dir), 0o700); err != nil {
			return nil, fmt.Errorf("build: create cache dir: %w", err)
		}
	}
	if o.MaxBuilds <= 0 {
		o.MaxBuilds = 2 * runtime.GOMAXPROCS(0)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	b := &Builder{
		builds:   freshGroup[string, partResult]{shareRunning: true},
		root:     root,
		state:    state,
		log:      o.Log,
		slots:    make(chan struct{}, o.MaxBuilds),
		m:        m,
		watch:    newTreeWatcher(root, state, o.Log, m.watchResets.Inc),
		parts:    map[string]*part{},
		tmpls:    map[[32]byte]*parsedTemplate{},
		outputs:  map[[32]byte][]byte{},
		tmplUses: map[string]tmplUse{},
		listings: map[string]*listing{},
	}
	// A Builder dropped without Close still releases its inotify instance.
	runtime.AddCleanup(b, (*treeWatcher).Close, b.watch)
	return b, nil
}

// Close releases the Builder's inotify watches; later calls still work (they
// walk the source trees).
func (b *Builder) Close() { b.watch.Close() }

func (b *Builder) imageDir(name string) string {
	return filepath.Join(b.root, "images", name, "rootfs")
}

func (b *Builder) overlayDir(name string) string {
	return filepath.Join(b.root, "overlays", name)
}

// hashKey hashes length-prefixed fields into a cache key.
func hashKey(fields ...string) string {
	h := sha256.New()
	for _, f := range fields {
		fmt.Fprintf(h, "%d:", len(f))
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// etag makes the quoted strong validator of an artifact from its parts' keys.
func etag(keys ...string) string {
	return `"` + hashKey(keys...) + `"`
}

type metrics struct {
	builds      *prometheus.CounterVec
	seconds     *prometheus.HistogramVec
	hits        *prometheus.CounterVec
	misses      *prometheus.CounterVec
	errors      *prometheus.CounterVec
	walks       *prometheus.CounterVec
	walkSecs    *prometheus.HistogramVec
	watchResets prometheus.Counter
	bytes       prometheus.Counter
	pruned      prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwserver_build_builds_total",
			Help: "Cache files built, by kind (image, system_shared, system_node, runtime).",
		}, []string{"kind"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wwserver_build_duration_seconds",
			Help:    "Time to build one cache file, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 11),
		}, []string{"kind"}),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwserver_build_cache_hits_total",
			Help: "Cache parts found built (in memory or on disk), by kind.",
		}, []string{"kind"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwserver_build_cache_misses_total",
			Help: "Cache parts a caller had to wait to be built, by kind.",
		}, []string{"kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwserver_build_errors_total",
			Help: "Failed artifact requests, by artifact (kernel, image, system, runtime).",
		}, []string{"kind"}),
		walks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwserver_build_tree_walks_total",
			Help: "Source tree fingerprint walks, by tree kind (image, overlay).",
		}, []string{"tree"}),
		walkSecs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wwserver_build_tree_walk_seconds",
			Help:    "Time of one source tree fingerprint walk.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"tree"}),
		watchResets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwserver_build_tree_watch_resets_total",
			Help: "Times the source tree watches were dropped (directory renamed, queue overflow, ...); each watched tree is walked again on its next request.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwserver_build_bytes_written_total",
			Help: "Bytes written to the build cache.",
		}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwserver_build_pruned_files_total",
			Help: "Old cache files removed.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.builds, m.seconds, m.hits, m.misses, m.errors, m.walks, m.walkSecs, m.watchResets, m.bytes, m.pruned} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("build: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
