// Package daemon is `wwserver serve`: it wires the config store, builder,
// node status, HTTP provisioning, DHCP, TFTP and the etcd cluster together,
// runs them until its context ends, and shuts them down in order.
package daemon

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

	"github.com/wwcluster/ww/server/artifact"
	"github.com/wwcluster/ww/server/cluster"
	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/dhcp"
	"github.com/wwcluster/ww/server/health"
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

// Options are serve's settings beyond the served tree's.
type Options struct {
	Root     string
	Listen   string // overrides wwserver.toml's listen ("" keeps it)
	MaxConns int
	// PerClient caps one source address's connections (0: MaxConns/4).
	PerClient int
}

// service is a part that runs until its context ends (DHCP, TFTP, etcd).
type service struct {
	name string
	run  func(context.Context) error
}

// server is one run of serve: what Run wires together.
type server struct {
	o          Options
	log        *slog.Logger
	root       string
	stateDir   string
	store      *config.Store
	snap       *config.Snapshot // at start
	listenAddr string           // HTTP: --listen, else wwserver.toml's
	reg        *prometheus.Registry
	health     *health.Registry
	status     *status.Store
	builder    *artifact.Builder
	boot       *bootWarnings
	handler    *provision.Handler
	leases     provision.Leases // DHCP's, for secure mode's source check; nil without DHCP
	tftpLeases tftp.LeaseLookup // DHCP's, naming TFTP clients; nil without DHCP
	peers      provision.Peers  // the cluster's live servers; nil without etcd

	services     []service
	ready        []<-chan struct{}
	healthChecks []provision.HealthCheck
	cleanup      []func() // run last first
}

// Run runs the server until ctx is done.
func Run(ctx context.Context, o Options, log *slog.Logger) error {
	// SIGHUP reloads; catch it before anything else (its default kills).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	s := &server{o: o, log: log}
	defer s.close()
	if err := s.open(); err != nil {
		return err
	}
	// DHCP and TFTP are created before anything starts, so a bad setting
	// fails the start cleanly.
	if err := s.addServices(); err != nil {
		return err
	}
	if err := s.newHandler(); err != nil {
		return err
	}
	if err := s.addTFTP(); err != nil {
		return err
	}
	if err := s.addHTTPS(); err != nil {
		return err
	}
	ln, srv, err := s.listen()
	if err != nil {
		return err
	}
	return s.serve(ctx, hup, ln, srv)
}

// close undoes what open and addServices set up, last first.
func (s *server) close() {
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
}

// open loads the tree's config and opens node status and the builder.
func (s *server) open() error {
	root, err := filepath.Abs(s.o.Root)
	if err != nil {
		return err
	}
	s.root = root
	s.store, err = config.NewStore(root, s.log)
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	s.snap = s.store.Current()
	s.stateDir = filepath.Join(root, "state")
	if err := os.MkdirAll(s.stateDir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	PrepareImages(root, s.log)

	s.reg = prometheus.NewRegistry()
	s.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	// Components report ok or degraded here; /healthz lists them.
	s.health = health.New()
	s.status, err = status.Open(filepath.Join(s.stateDir, status.FileName), s.log)
	if err != nil {
		return fmt.Errorf("node status: %w", err)
	}
	s.status.SetUpdateInterval(s.snap.Server.UpdateInterval.Duration)
	s.status.Health = s.health

	s.builder, err = artifact.New(artifact.Options{Root: root, StateDir: s.stateDir, Log: s.log, Registerer: s.reg})
	if err != nil {
		return err
	}
	s.cleanup = append(s.cleanup, func() { s.builder.Close() })
	s.watchConfig()
	s.listenAddr = s.snap.Server.Listen
	if s.o.Listen != "" {
		s.listenAddr = s.o.Listen
		if _, p, err := net.SplitHostPort(s.listenAddr); err == nil && p != strconv.Itoa(s.snap.Server.Port) {
			s.log.Warn("--listen port differs from wwserver.toml; nodes are told the wwserver.toml port",
				"listen", s.listenAddr, "nodes_use", s.snap.Server.Port)
		}
	}
	return nil
}

// watchConfig checks the boot images now and on every reload, and watches
// the config files.
func (s *server) watchConfig() {
	// Images nodes cannot boot (init's placeholder, no kernel): logged at
	// start and on each reload that changes them, named by /healthz.
	s.boot = newBootWarnings(artifact.NewBootChecker(s.builder), s.log)
	s.boot.check(s.snap)
	s.store.OnReload = func(next *config.Snapshot) {
		// Status is never pruned here: a node removed from nodes.toml is
		// hidden from /status and kept until `wwserver status prune` or
		// status.RemovedMaxAge.
		s.status.SetUpdateInterval(next.Server.UpdateInterval.Duration)
		warnRestartNeeded(s.log, s.snap.Server, next.Server, s.o.Listen != "")
		s.boot.check(next)
	}
	done := make(chan struct{})
	s.cleanup = append(s.cleanup, func() { close(done) })
	if err := s.store.Watch(done); err != nil {
		// Fresh() still stat-checks the files on every request.
		s.log.Warn("config file watching unavailable; changes are seen on the next request", "err", err)
	}
}

// addServices creates the etcd cluster member and DHCP as wwserver.toml
// asks (TFTP: addTFTP, once the handler exists).
func (s *server) addServices() error {
	sh, err := cluster.Open(s.snap.Server, s.log.With("svc", "etcd"), s.reg)
	if err != nil {
		return fmt.Errorf("state backend: %w", err)
	}
	var sharedLeases dhcp.SharedLeases
	if sh != nil {
		s.cleanup = append(s.cleanup, func() { sh.Close() })
		sharedLeases = sh.DHCPLeases()
		s.healthChecks = append(s.healthChecks, sh.Health)
		s.services = append(s.services,
			service{"etcd", func(ctx context.Context) error { sh.Run(ctx, s.store, s.builder); return nil }},
			service{"etcd-status", sh.ShareStatus(s.status)})
	}
	if s.snap.Server.DHCP.Enabled {
		d, err := dhcp.New(dhcp.Options{Store: s.store, StateDir: s.stateDir, Status: s.status, Log: s.log.With("svc", "dhcp"),
			Registerer: s.reg, Shared: sharedLeases})
		if err != nil {
			return fmt.Errorf("dhcp: %w", err)
		}
		s.healthChecks = append(s.healthChecks, d.Health) // e.g. a corrupt lease file moved aside
		s.services = append(s.services, service{"dhcp", d.Run})
		s.ready = append(s.ready, d.Ready())
		s.tftpLeases = d // TFTP names pool clients by their DHCP lease
		s.leases = dhcpLeases{d}
	} else if s.snap.Server.DHCP.AnswerRouterSolicitations != config.AnswerRSNever {
		s.log.Info("dhcp.enabled is false, so IPv6 router solicitations are not answered either (answer_router_solicitations works on dhcp.interface, with the DHCP server); " +
			"on a network without an IPv6 router iPXE waits ~16 s for one")
	}
	if sh != nil {
		s.peers = cluster.Peers{Member: sh, Store: s.store}
	}
	return nil
}

// addTFTP creates the TFTP server as wwserver.toml asks, after the
// handler: the handler answers GRUB's names (grub/grub.cfg, grub/MAC, a
// node's files), which Debian's signed GRUB fetches over TFTP.
func (s *server) addTFTP() error {
	if !s.snap.Server.TFTP.Enabled {
		return nil
	}
	t, err := tftp.New(tftp.Options{Store: s.store, StateDir: s.stateDir, Status: s.status, Log: s.log.With("svc", "tftp"),
		Registerer: s.reg, Leases: s.tftpLeases, Generator: s.handler})
	if err != nil {
		return fmt.Errorf("tftp: %w", err)
	}
	s.services = append(s.services, service{"tftp", t.Run})
	s.ready = append(s.ready, t.Ready())
	return nil
}

// newHandler creates the HTTP provisioning handler.
func (s *server) newHandler() error {
	h, err := provision.New(provision.Options{
		Config: s.store, Builder: builderAdapter{b: s.builder, health: s.health, boot: s.boot}, Status: s.status, Log: s.log,
		Registry: s.reg, Leases: s.leases, Discoverer: nodeedit.NewDiscoverer(s.store, s.log), Health: s.health,
		FreshEvery: provision.DefaultFreshEvery, Peers: s.peers, TLSPort: s.snap.Server.TLSPort(),
	})
	if err != nil {
		return err
	}
	for _, c := range s.healthChecks {
		h.AddHealthCheck(c)
	}
	h.AddHealthWarnings(func() []string { return s.boot.check(s.store.Current()) })
	s.handler = h
	return nil
}

// listen opens the HTTP listener (bounded by --max-connections) and the
// server on it.
func (s *server) listen() (net.Listener, *http.Server, error) {
	ln, err := net.Listen("tcp", s.listenAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen: %w", err)
	}
	// Request contexts are not tied to ctx: on SIGTERM in-flight downloads
	// get shutdownGrace to finish.
	srv := provision.NewHTTPServer(s.handler, s.log)
	if s.o.MaxConns > 0 {
		// One goroutine per connection: bound them, idle ones first to go.
		lim, err := provision.NewConnLimiter(ln, provision.ConnLimits{Max: s.o.MaxConns, PerClient: s.o.PerClient},
			s.reg, s.log.With("svc", "http"))
		if err != nil {
			ln.Close()
			return nil, nil, fmt.Errorf("--max-connections: %w", err)
		}
		ln = lim
		srv.ConnState = lim.ConnState
	}
	return ln, srv, nil
}

// serve starts HTTP and the services, reports ready, handles SIGHUP until
// ctx ends or a service fails, and shuts down: HTTP (with shutdownGrace for
// downloads), the services, then a final status flush.
func (s *server) serve(ctx context.Context, hup <-chan os.Signal, ln net.Listener, srv *http.Server) error {
	// Status flushes after HTTP has stopped, so late events are kept.
	statusCtx, stopStatus := context.WithCancel(context.Background())
	defer stopStatus()
	statusDone := make(chan error, 1)
	go func() { statusDone <- s.status.Run(statusCtx) }()

	var wg sync.WaitGroup
	errc := make(chan error, len(s.services)+1)
	svcCtx, stopSvc := context.WithCancel(ctx)
	defer stopSvc()
	s.start(svcCtx, &wg, errc, ln, srv)
	s.waitReady(ctx, errc, ln)

	runErr := s.loop(ctx, hup, errc)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	stopSvc()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("in-flight requests cut off at shutdown", "err", err)
		_ = srv.Close()
	}
	wg.Wait()
	s.handler.FlushLogs()
	stopStatus()
	if err := <-statusDone; err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("final status flush: %w", err))
	}
	s.log.Info("stopped")
	return runErr
}

// start runs HTTP, every service and the prune loop in goroutines; their
// failures go to errc.
func (s *server) start(svcCtx context.Context, wg *sync.WaitGroup, errc chan<- error, ln net.Listener, srv *http.Server) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	for _, svc := range s.services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc.run(svcCtx); err != nil && svcCtx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", svc.name, err)
			}
		}()
	}
	go pruneLoop(svcCtx, s.builder, s.status, s.store, s.log)
}

// waitReady waits until DHCP and TFTP have bound their sockets (HTTP
// already listens), then logs and tells systemd the server is ready.
func (s *server) waitReady(ctx context.Context, errc chan error, ln net.Listener) {
	for _, r := range s.ready {
		select {
		case <-r:
		case err := <-errc:
			errc <- err
		case <-ctx.Done():
		}
	}
	snap := s.snap
	s.log.Info("wwserver serving", "root", s.root, "listen", ln.Addr().String(), "nodes", len(snap.Nodes.List),
		"url", snap.Server.URL(), "secure", snap.Server.IsSecure(),
		"dhcp", snap.Server.DHCP.Enabled, "tftp", snap.Server.TFTP.Enabled)
	if ok, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		s.log.Warn("systemd notify failed", "err", err)
	} else if ok {
		s.log.Debug("systemd notified: ready")
	}
}

// loop reloads the config on SIGHUP until ctx ends (nil) or a service
// fails (its error).
func (s *server) loop(ctx context.Context, hup <-chan os.Signal, errc <-chan error) error {
	for {
		select {
		case <-ctx.Done():
			s.log.Info("shutting down")
			return nil
		case <-hup:
			s.log.Info("SIGHUP: reloading config")
			if err := s.store.Reload(); err != nil {
				s.log.Error("reload failed; keeping the last good config", "err", err)
			}
		case err := <-errc:
			s.log.Error("service failed; shutting down", "err", err)
			return err
		}
	}
}
