package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/wwcluster/ww/server/build"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/dhcp"
	"github.com/wwcluster/ww/server/health"
	"github.com/wwcluster/ww/server/hostlist"
	"github.com/wwcluster/ww/server/image"
	"github.com/wwcluster/ww/server/nodeedit"
	"github.com/wwcluster/ww/server/provision"
	"github.com/wwcluster/ww/server/status"
	"github.com/wwcluster/ww/server/tftp"
)

// shutdownGrace is how long in-flight downloads may finish on SIGTERM.
const shutdownGrace = 20 * time.Second

// gcPercent is serve's GOGC unless the environment sets one: the heap is
// small (configs, status, caches) and request garbage dominates, so
// collecting 4x less often cut an iPXE script's server CPU by ~13%.
const gcPercent = 400

// pruneEvery is how often serve prunes the build cache.
const pruneEvery = 10 * time.Minute

type serveOptions struct {
	root     string
	listen   string
	maxConns int
	// perClient caps one source address's connections (0: maxConns/4).
	perClient int
	logs      logFlags
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve [DIR]",
		Short: "Serve nodes: HTTP provisioning, plus DHCP and TFTP when enabled",
		Long: `serve provisions nodes from the served tree until SIGTERM or SIGINT.

It reloads wwserver.toml and nodes.toml when they change (and on SIGHUP); a
bad file is logged and the last good configuration stays in use (/healthz
then answers 503 "degraded"). Images and overlays are built on demand and
cached under state/. Node status is kept in state/status.json.

DHCP and TFTP start when enabled in wwserver.toml; enabling or disabling
them, or changing listen addresses, needs a restart.

Under systemd (Type=notify) it reports READY once listening. GOGC defaults
to 400 here (the environment's GOGC wins).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := o.logs.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return serve(ctx, o, log)
		},
	}
	addTreeArg(cmd, &o.root)
	cmd.Flags().IntVar(&o.maxConns, "max-connections", 8192,
		"HTTP connections held at once; at the limit the longest-idle one is closed for a new one, and only when all are busy do new ones wait")
	cmd.Flags().IntVar(&o.perClient, "max-connections-per-client", 0,
		"HTTP connections one source address may hold (0: a quarter of --max-connections; -1: no cap)")
	cmd.Flags().StringVar(&o.listen, "listen", "", "HTTP listen address, overriding wwserver.toml's listen (nodes are still told its port)")
	o.logs.add(cmd)
	return cmd
}

// serve runs the server until ctx is done.
func serve(ctx context.Context, o serveOptions, log *slog.Logger) error {
	// SIGHUP reloads; catch it before anything else (its default kills).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	root, err := filepath.Abs(o.root)
	if err != nil {
		return err
	}
	store, err := config.NewStore(root, log)
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	snap := store.Current()
	stateDir := filepath.Join(root, "state")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	prepareImages(root, log)

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	// Components report ok or degraded here; /healthz lists them.
	healthReg := health.New()
	st, err := status.Open(filepath.Join(stateDir, status.FileName), log)
	if err != nil {
		return fmt.Errorf("node status: %w", err)
	}
	st.SetUpdateInterval(snap.Server.UpdateInterval.Duration)
	st.Health = healthReg

	b, err := build.New(build.Options{Root: root, StateDir: stateDir, Log: log, Registerer: reg})
	if err != nil {
		return err
	}
	defer b.Close()
	// Images nodes cannot boot (init's placeholder, no kernel): logged at
	// start and on each reload that changes them, named by /healthz.
	boot := newBootWarnings(build.NewBootChecker(b), log)
	boot.check(snap)
	store.OnReload = func(next *config.Snapshot) {
		// Status is never pruned here: a node removed from nodes.toml is
		// hidden from /status and kept until `wwserver status prune` or
		// status.RemovedMaxAge.
		st.SetUpdateInterval(next.Server.UpdateInterval.Duration)
		warnRestartNeeded(log, snap.Server, next.Server, o.listen != "")
		boot.check(next)
	}
	done := make(chan struct{})
	defer close(done)
	if err := store.Watch(done); err != nil {
		// Fresh() still stat-checks the files on every request.
		log.Warn("config file watching unavailable; changes are seen on the next request", "err", err)
	}

	listen := snap.Server.Listen
	if o.listen != "" {
		listen = o.listen
		if _, p, err := net.SplitHostPort(listen); err == nil && p != strconv.Itoa(snap.Server.Port) {
			log.Warn("--listen port differs from wwserver.toml; nodes are told the wwserver.toml port",
				"listen", listen, "nodes_use", snap.Server.Port)
		}
	}
	// DHCP and TFTP are created before anything starts, so a bad setting
	// fails the start cleanly.
	type service struct {
		name string
		run  func(context.Context) error
	}
	var services []service
	var ready []<-chan struct{}
	var leases tftp.LeaseLookup
	var provLeases provision.Leases
	var healthChecks []provision.HealthCheck
	sh, err := openShared(snap.Server, log.With("svc", "etcd"))
	if err != nil {
		return fmt.Errorf("state backend: %w", err)
	}
	var sharedLeases dhcp.SharedLeases
	var peers provision.Peers
	if sh != nil {
		peers = sharedPeers{sh, store}
		defer sh.Close()
		sharedLeases = sh.dhcpLeases()
		healthChecks = append(healthChecks, sh.health)
		services = append(services, service{"etcd", func(ctx context.Context) error { sh.run(ctx, store, b); return nil }},
			service{"etcd-status", sh.shareStatus(st)})
	}
	if snap.Server.DHCP.Enabled {
		d, err := dhcp.New(dhcp.Options{Store: store, StateDir: stateDir, Status: st, Log: log.With("svc", "dhcp"), Registerer: reg,
			Shared: sharedLeases})
		if err != nil {
			return fmt.Errorf("dhcp: %w", err)
		}
		healthChecks = append(healthChecks, d.Health) // e.g. a corrupt lease file moved aside
		services = append(services, service{"dhcp", d.Run})
		ready = append(ready, d.Ready())
		leases = d // TFTP names pool clients by their DHCP lease
		provLeases = dhcpLeases{d}
	} else if snap.Server.DHCP.AnswerRouterSolicitations != config.AnswerRSNever {
		log.Info("dhcp.enabled is false, so IPv6 router solicitations are not answered either (answer_router_solicitations works on dhcp.interface, with the DHCP server); " +
			"on a network without an IPv6 router iPXE waits ~16 s for one")
	}
	if snap.Server.TFTP.Enabled {
		t, err := tftp.New(tftp.Options{Store: store, StateDir: stateDir, Status: st, Log: log.With("svc", "tftp"),
			Registerer: reg, Leases: leases})
		if err != nil {
			return fmt.Errorf("tftp: %w", err)
		}
		services = append(services, service{"tftp", t.Run})
		ready = append(ready, t.Ready())
	}

	h, err := provision.New(provision.Options{
		Config: store, Builder: builderAdapter{b: b, health: healthReg, boot: boot}, Status: st, Log: log, Registry: reg,
		Leases: provLeases, Discoverer: nodeedit.NewDiscoverer(store, log), Health: healthReg,
		FreshEvery: provision.DefaultFreshEvery, Peers: peers,
	})
	if err != nil {
		return err
	}
	for _, c := range healthChecks {
		h.AddHealthCheck(c)
	}
	h.AddHealthWarnings(func() []string { return boot.check(store.Current()) })

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Request contexts are not tied to ctx: on SIGTERM in-flight downloads
	// get shutdownGrace to finish.
	srv := provision.NewHTTPServer(h, log)
	if o.maxConns > 0 {
		// One goroutine per connection: bound them, idle ones first to go.
		lim, err := provision.NewConnLimiter(ln, provision.ConnLimits{Max: o.maxConns, PerClient: o.perClient},
			reg, log.With("svc", "http"))
		if err != nil {
			ln.Close()
			return fmt.Errorf("--max-connections: %w", err)
		}
		ln = lim
		srv.ConnState = lim.ConnState
	}

	// Status flushes after HTTP has stopped, so late events are kept.
	statusCtx, stopStatus := context.WithCancel(context.Background())
	defer stopStatus()
	statusDone := make(chan error, 1)
	go func() { statusDone <- st.Run(statusCtx) }()

	var wg sync.WaitGroup
	errc := make(chan error, len(services)+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	svcCtx, stopSvc := context.WithCancel(ctx)
	defer stopSvc()
	for _, svc := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc.run(svcCtx); err != nil && svcCtx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", svc.name, err)
			}
		}()
	}
	go pruneLoop(svcCtx, b, st, store, log)

	// Ready once HTTP listens and DHCP and TFTP have bound their sockets.
	for _, r := range ready {
		select {
		case <-r:
		case err := <-errc:
			errc <- err
		case <-ctx.Done():
		}
	}
	log.Info("wwserver serving", "root", root, "listen", ln.Addr().String(), "nodes", len(snap.Nodes.List),
		"url", snap.Server.URL(), "secure", snap.Server.IsSecure(),
		"dhcp", snap.Server.DHCP.Enabled, "tftp", snap.Server.TFTP.Enabled)
	if ok, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Warn("systemd notify failed", "err", err)
	} else if ok {
		log.Debug("systemd notified: ready")
	}

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			break loop
		case <-hup:
			log.Info("SIGHUP: reloading config")
			if err := store.Reload(); err != nil {
				log.Error("reload failed; keeping the last good config", "err", err)
			}
		case runErr = <-errc:
			log.Error("service failed; shutting down", "err", runErr)
			break loop
		}
	}
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	stopSvc()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("in-flight requests cut off at shutdown", "err", err)
		_ = srv.Close()
	}
	wg.Wait()
	h.FlushLogs()
	stopStatus()
	if err := <-statusDone; err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("final status flush: %w", err))
	}
	log.Info("stopped")
	return runErr
}

// warnRestartNeeded logs settings that changed on reload but only take
// effect on restart.
func warnRestartNeeded(log *slog.Logger, was, now *config.Server, listenOverridden bool) {
	if was.Listen != now.Listen && !listenOverridden {
		log.Warn("listen changed in wwserver.toml; restart wwserver to apply", "was", was.Listen, "now", now.Listen)
	}
	if was.DHCP.Enabled != now.DHCP.Enabled {
		log.Warn("dhcp.enabled changed; restart wwserver to apply", "now", now.DHCP.Enabled)
	}
	if was.DHCP.AnswerRouterSolicitations != now.DHCP.AnswerRouterSolicitations {
		log.Warn("dhcp.answer_router_solicitations changed; restart wwserver to apply", "now", now.DHCP.AnswerRouterSolicitations)
	}
	if was.TFTP.Enabled != now.TFTP.Enabled {
		log.Warn("tftp.enabled changed; restart wwserver to apply", "now", now.TFTP.Enabled)
	}
}

// prepareImages makes images/ root-only when every local user can reach
// it (image trees hold setuid-root programs), and removes what killed
// imports left.
func prepareImages(root string, log *slog.Logger) {
	if why, err := image.ImagesExposure(root); err != nil {
		log.Warn("cannot check the permissions of images/", "err", err)
	} else if why != "" {
		old, changed, err := image.SecureImagesDir(root)
		switch {
		case err != nil:
			log.Warn("images/ is reachable by every local user and could not be made root-only", "problem", why, "err", err)
		case changed:
			log.Warn("images/ was reachable by every local user: made it root-only", "old_mode", fmt.Sprintf("%04o", old))
		default:
			log.Warn("images/ is reachable by a user other than root", "problem", why)
		}
	}
	removed, err := image.CleanLeftovers(root)
	for _, r := range removed {
		log.Info("removed what a killed image import or delete left", "path", r)
	}
	if err != nil {
		log.Warn("cannot remove what killed image imports left", "err", err)
	}
}

// pruneLoop removes unused build cache files and aged-out status entries
// now and then.
func pruneLoop(ctx context.Context, b *build.Builder, st *status.Store, cfg *config.Store, log *slog.Logger) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := b.Prune(build.DefaultPruneAge); err != nil {
				log.Warn("prune build cache", "err", err)
			}
			if removed, unknown := st.Expire(cfg.Current().Nodes); removed+unknown > 0 {
				log.Info("status entries aged out", "removed_nodes", removed, "unknown_macs", unknown)
			}
		}
	}
}

// buildHealth is the component builds report under in /healthz.
const buildHealth = "build"

// dhcpLeases gives provision the DHCP leases (secure mode's source check).
type dhcpLeases struct{ *dhcp.Server }

// HasLease scans a copy of the table: only requests from an address the
// node does not hold get here.
func (l dhcpLeases) HasLease(mac string) bool {
	now := time.Now()
	for _, ls := range l.Leases() {
		if ls.MAC == mac && ls.State != dhcp.StateDeclined && ls.Active(now) {
			return true
		}
	}
	return false
}

// builderAdapter gives provision the builder; build's not-found errors
// become provision's (404 instead of 500). Every other outcome goes to
// health: a failing build (a full disk) degrades /healthz until one works.
type builderAdapter struct {
	b      *build.Builder
	health health.Reporter
	boot   *bootWarnings // may be nil
}

func (a builderAdapter) Kernel(ctx context.Context, s *config.Snapshot, n *config.Node) (*provision.Artifact, error) {
	art, err := a.b.Kernel(ctx, s, n)
	if err == nil && a.boot != nil {
		a.boot.serving(n, art)
	}
	return a.artifact(art, err)
}

// bootWarnings logs and lists the images nodes cannot boot.
type bootWarnings struct {
	checker *build.BootChecker
	log     *slog.Logger
	limit   *health.Limiter // serving a known non-kernel: once a minute per kernel

	mu     sync.Mutex
	logged map[string]bool // problems already logged
}

func newBootWarnings(c *build.BootChecker, log *slog.Logger) *bootWarnings {
	return &bootWarnings{checker: c, log: log, limit: health.NewLimiter(health.DefaultLogEvery, nil), logged: map[string]bool{}}
}

// check returns one line per image of snap that nodes cannot boot, naming
// the nodes, and logs each problem the first time it is seen.
func (w *bootWarnings) check(snap *config.Snapshot) []string {
	probs := w.checker.Problems(snap)
	lines := make([]string, 0, len(probs))
	now := make(map[string]bool, len(probs))
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range probs {
		names := make([]string, len(p.Nodes))
		for i, n := range p.Nodes {
			names[i] = n.Name
		}
		nodes := hostlist.Compress(names)
		plural := "s"
		if len(names) == 1 {
			plural = ""
		}
		lines = append(lines, fmt.Sprintf("%d node%s cannot boot (%s): %v", len(names), plural, nodes, p.Err))
		key := p.Image + "\x00" + p.Kernel + "\x00" + p.Err.Error()
		now[key] = true
		if !w.logged[key] {
			w.log.Warn("nodes cannot boot this image; see wwserver check", "image", p.Image, "nodes", nodes, "count", len(names), "err", p.Err)
		}
	}
	w.logged = now
	return lines
}

// serving logs (once a minute per kernel) when a node is sent a kernel
// that check found is not one.
func (w *bootWarnings) serving(n *config.Node, art *build.Artifact) {
	if w.checker.IsBad(art.ETag) && w.limit.Allow(art.ETag) {
		w.log.Warn("sending a kernel that is not a Linux kernel image; the node will not boot", "node", n.Name, "image", n.Image, "kernel", art.Name)
	}
}

func (a builderAdapter) Image(ctx context.Context, s *config.Snapshot, n *config.Node) (*provision.Artifact, error) {
	return a.artifact(a.b.Image(ctx, s, n))
}

func (a builderAdapter) SystemOverlay(ctx context.Context, s *config.Snapshot, n *config.Node) (*provision.Artifact, error) {
	return a.artifact(a.b.SystemOverlay(ctx, s, n))
}

func (a builderAdapter) RuntimeOverlay(ctx context.Context, s *config.Snapshot, n *config.Node) (*provision.Artifact, error) {
	return a.artifact(a.b.RuntimeOverlay(ctx, s, n))
}

func (a builderAdapter) artifact(art *build.Artifact, err error) (*provision.Artifact, error) {
	if err != nil {
		if errors.Is(err, build.ErrNotFound) || errors.Is(err, build.ErrTemplate) || errors.Is(err, build.ErrInvalidName) ||
			errors.Is(err, context.Canceled) {
			// The node's config or a client, not the server: no health change.
			if errors.Is(err, build.ErrNotFound) {
				return nil, fmt.Errorf("%w: %w", provision.ErrNotFound, err)
			}
			return nil, err
		}
		if a.health != nil {
			a.health.Report(buildHealth, err)
		}
		return nil, err
	}
	if a.health != nil {
		a.health.Report(buildHealth, nil)
	}
	return &provision.Artifact{Name: art.Name, ETag: art.ETag, Size: art.Size, ModTime: art.ModTime, Open: art.Open}, nil
}
