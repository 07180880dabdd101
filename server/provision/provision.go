// Package provision is wwserver's HTTP side: the boot stages a node walks
// through (iPXE script, kernel, image, system overlay, runtime overlay), the
// agent's heartbeat, and /status, /metrics, /healthz.
//
// Handlers only look up and render: the config store has already resolved
// nodes, server/bootplan decides what a node boots and server/bootscript
// renders it, the builder owns images and overlays (and its cache), and the
// status store owns persistence. Each stage lives in its own file; routes.go
// lists them in boot order.
package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwcluster/ww/server/bootscript"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/status"
)

// Config is the part of *config.Store the handlers use.
type Config interface {
	// Fresh returns the current snapshot, reloading first when a file changed.
	Fresh() *config.Snapshot
	// LastError is the error of the last failed reload (nil when healthy).
	LastError() error
	// Root is the served tree.
	Root() string
}

// Artifact is one file the builder made for a node.
type Artifact struct {
	Name    string // file name recorded as sent, e.g. "vmlinuz-6.1.0-28-amd64"
	ETag    string // strong validator of the content; quoted or not
	Size    int64
	ModTime time.Time
	// Open returns the content from its start. The handler closes it.
	Open func() (io.ReadSeekCloser, error)
}

// ErrNotFound marks builder errors for things that do not exist (no image,
// no kernel in the image, unknown overlay): they answer 404, not 500.
var ErrNotFound = errors.New("not found")

// Builder produces a node's boot files. Implementations build on demand and
// cache; errors for missing inputs wrap ErrNotFound.
type Builder interface {
	Kernel(ctx context.Context, snap *config.Snapshot, n *config.Node) (*Artifact, error)
	Image(ctx context.Context, snap *config.Snapshot, n *config.Node) (*Artifact, error)
	SystemOverlay(ctx context.Context, snap *config.Snapshot, n *config.Node) (*Artifact, error)
	RuntimeOverlay(ctx context.Context, snap *config.Snapshot, n *config.Node) (*Artifact, error)
}

// Status is the part of *status.Store the handlers use.
type Status interface {
	status.Recorder
	RecordHeartbeat(node, mac, ip string, hb status.Heartbeat)
	JSON(nodes *config.Nodes) ([]byte, error)
	// SetUpdateInterval tells the store how often nodes check in (for
	// "overdue" in reports).
	SetUpdateInterval(d time.Duration)
}

// Leases tells which addresses nodes hold by DHCP; *dhcp.Server provides
// it (serve.go adapts it). Secure mode's source check uses it.
type Leases interface {
	// LeaseByIP returns the MAC (and node name) holding ip by an active lease.
	LeaseByIP(ip string) (mac, node string, ok bool)
	// HasLease reports whether mac holds an active lease.
	HasLease(mac string) bool
}

// Registry is where metrics go and /metrics reads from; a
// *prometheus.Registry is one. Never the global default registry.
type Registry interface {
	prometheus.Registerer
	prometheus.Gatherer
}

// Options configure a Handler.
type Options struct {
	Config  Config
	Builder Builder
	Status  Status
	Log     *slog.Logger
	// Registry receives the HTTP metrics and is served on /metrics; nil makes
	// a private one.
	Registry Registry
	// Discoverer, when set, may give an unknown MAC that asks for an iPXE
	// script a discoverable node (server/nodeedit).
	Discoverer Discoverer
	// Leases (may be nil: no built-in DHCP) adds DHCP leases to the
	// addresses a node may call from in secure mode.
	Leases Leases
	// LogEvery is the window of repeated per-request log lines (unknown
	// MACs, refusals, errors): one line, then one summary with a count per
	// window. Zero means DefaultLogEvery.
	LogEvery time.Duration
	// Health, when set, lists the components /healthz reports besides the
	// config and the checks added by AddHealthCheck (status flushes, builds).
	Health Health
	// FreshEvery bounds how often the node routes ask Config.Fresh (a stat
	// of both config files): at most once per FreshEvery; zero asks on every
	// request. serve uses DefaultFreshEvery.
	FreshEvery time.Duration
	// MinThroughput sizes the write deadline of file stages:
	// deadline = 2 minutes + size/MinThroughput. Zero means 1 MiB/s.
	MinThroughput int64
	// Peers, when set, lists the live servers of a cluster sharing state
	// through etcd: iPXE scripts name them all, this one first, and each
	// download falls back to the next. nil: this server alone.
	Peers Peers
	// TLSPort, when not 0, is the HTTPS port this server also serves the
	// handler on: the runtime overlay and heartbeats are then refused on
	// plain HTTP (403 TLS_REQUIRED; see tls.go).
	TLSPort int
}

// DefaultFreshEvery is how often serve's node routes look at the config
// files' stamps (the file watch reloads at once besides).
const DefaultFreshEvery = 20 * time.Millisecond

// Peers lists the live wwservers of a cluster that shares state (see
// server/etcdstate), each as host:port, in any order.
type Peers interface {
	Servers() []string
}

// Discoverer assigns an unknown MAC to a waiting node; a nil node means none.
type Discoverer interface {
	Discover(mac string) (*config.Snapshot, *config.Node, error)
}

// Handler is the provisioning HTTP handler.
type Handler struct {
	discover Discoverer
	cfg      Config
	fresh    *freshSnapshot
	builder  Builder
	status   Status
	leases   Leases
	log      *slog.Logger
	logs     *logThrottle // per-request lines
	reg      Registry
	metrics  *metrics
	ipxe     bootscript.Renderer
	grub     *bootscript.GRUB
	peers    Peers // nil: this server alone
	tlsPort  int   // 0: no HTTPS listener
	minRate  int64
	mux      http.Handler
	arches   *snapMemo[archKey, string]   // image architectures, see snapmemo.go
	digests  *snapMemo[string, string]    // two-stage image digests by image name, see snapmemo.go
	alone    atomic.Pointer[aloneServers] // servers() without peers, per snapshot
	stages   map[string]http.Handler      // /provision?stage= → stage handler

	healthMu sync.Mutex
	health   []HealthCheck // besides the config's: see AddHealthCheck
	warnings []HealthWarnings
	registry Health // components (status, build, …); may be nil
}

// New returns the provisioning handler.
func New(opts Options) (*Handler, error) {
	if opts.Config == nil || opts.Builder == nil || opts.Status == nil {
		return nil, errors.New("provision: Config, Builder and Status are required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.MinThroughput <= 0 {
		opts.MinThroughput = 1 << 20
	}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return nil, fmt.Errorf("provision metrics: %w", err)
	}
	ipxe, err := bootscript.NewIPXE(opts.Config.Root())
	if err != nil {
		return nil, err
	}
	grub, err := bootscript.NewGRUB()
	if err != nil {
		return nil, err
	}
	h := &Handler{
		grub:     grub,
		discover: opts.Discoverer,
		cfg:      opts.Config,
		fresh:    newFreshSnapshot(opts.Config, opts.FreshEvery),
		arches:   &snapMemo[archKey, string]{every: opts.FreshEvery},
		digests:  &snapMemo[string, string]{every: opts.FreshEvery},
		builder:  opts.Builder,
		status:   opts.Status,
		leases:   opts.Leases,
		tlsPort:  opts.TLSPort,
		log:      opts.Log,
		logs:     newLogThrottle(opts.Log, opts.LogEvery),
		reg:      opts.Registry,
		metrics:  m,
		ipxe:     ipxe,
		peers:    opts.Peers,
		minRate:  opts.MinThroughput,
		registry: opts.Health,
	}
	h.mux = h.routes()
	return h, nil
}

// FlushLogs logs the pending summaries of repeated log lines now (at
// shutdown).
func (h *Handler) FlushLogs() { h.logs.Flush() }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	collapseBootBinSlashes(r)
	h.mux.ServeHTTP(w, r)
}
