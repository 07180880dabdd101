package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/wwcluster/ww/internal/buildinfo"
	"github.com/wwcluster/ww/wwclient/agent"
	"github.com/wwcluster/ww/wwclient/apply"
	"github.com/wwcluster/ww/wwclient/kmod"
	"github.com/wwcluster/ww/wwclient/netwait"
	"github.com/wwcluster/ww/wwclient/nodeconf"
	"github.com/wwcluster/ww/wwclient/selabel"
)

// buildVersion is set at link time: -ldflags "-X main.buildVersion=v1.2.3".
var buildVersion string

func version() string { return buildinfo.Version(buildVersion) }

type flags struct {
	config, root, server, cmdline, stateDir, lock, logLevel, dmiAssetTag string
	once, showVersion, noNetWait                                         bool
}

func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	var f flags
	fset := flag.NewFlagSet("wwclient", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.StringVar(&f.config, "config", nodeconf.DefaultPath, "wwclient.toml to read")
	fset.StringVar(&f.root, "root", "/", "directory the runtime overlay is applied to")
	fset.StringVar(&f.server, "server", "", "wwserver address HOST:PORT or URL (overrides config and kernel wwserver=)")
	fset.BoolVar(&f.once, "once", false, "sync once (heartbeat + runtime overlay) and exit; no network wait, no lock, no state")
	fset.BoolVar(&f.showVersion, "version", false, "print the version and exit")
	fset.StringVar(&f.cmdline, "cmdline", nodeconf.DefaultCmdlinePath, "kernel command line file (wwid=, wwserver=)")
	fset.StringVar(&f.stateDir, "state-dir", "/run/wwclient", "daemon: where the applied runtime overlay ETag is kept")
	fset.StringVar(&f.lock, "lock", agent.DefaultLockPath, "daemon: lock file that keeps a second agent from running")
	fset.BoolVar(&f.noNetWait, "no-net-wait", false, "daemon: do not wait for (or configure) the primary interface")
	fset.StringVar(&f.dmiAssetTag, "asset-tag-file", "/sys/class/dmi/id/chassis_asset_tag", "where the asset key is read when the config has none (SMBIOS chassis asset tag; empty: never)")
	fset.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fset.Usage = func() {
		fmt.Fprintf(stderr, "usage: wwclient [flags]\n\nThe wwcluster node agent. As PID 1 or /init it is the boot-time init instead.\n\n")
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		return nil, err
	}
	if fset.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fset.Arg(0))
	}
	return &f, nil
}

// run is the agent's main; it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	f, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "wwclient:", err)
		return 2
	}
	if f.showVersion {
		fmt.Fprintln(stdout, "wwclient", version())
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintln(stderr, "wwclient: --log-level:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("prog", "wwclient")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if !f.once {
		lock, err := agent.Lock(f.lock)
		if errors.Is(err, agent.ErrLocked) {
			log.Info("already running", "lock", f.lock)
			// under systemd (Type=notify, RemainAfterExit=yes) this start
			// counts as successful instead of failing with "protocol"
			_, _ = daemon.SdNotify(false, "READY=1\nSTATUS=another wwclient is already running")
			return 0
		}
		if err != nil {
			log.Error("cannot take the lock", "err", err)
			return 1
		}
		defer lock.Close()
	}

	eff, err := settings(f, log)
	if err != nil {
		log.Error("configuration", "err", err)
		return 1
	}
	a, err := newAgent(f, eff, log)
	if err != nil {
		log.Error("configuration", "err", err)
		return 1
	}

	if f.once {
		res, err := a.Sync(ctx)
		if err != nil {
			log.Error("sync failed", "err", err)
			return 1
		}
		if !res.Changed {
			log.Info("runtime overlay unchanged", "etag", res.ETag)
		}
		return 0
	}

	log.Info("starting", "version", version(), "node", eff.Config.Node, "mac", eff.MAC, "server", eff.Server,
		"interval", eff.Config.Interval().String(), "secure", eff.Config.Secure, "root", f.root)
	if !f.noNetWait {
		waitNetwork(ctx, eff, log)
	}
	trigger, stopHup := hupTrigger(ctx)
	defer stopHup()
	if err := a.Run(ctx, trigger); err != nil {
		log.Error("agent", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// hupTrigger turns SIGHUP into a sync now (one pending at most) until ctx
// ends; stop stops listening.
func hupTrigger(ctx context.Context) (trigger <-chan struct{}, stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	t := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case t <- struct{}{}:
				default:
				}
			}
		}
	}()
	return t, func() { signal.Stop(hup) }
}

// settings merges config file, kernel command line and --server. A
// missing config file is tolerated (kernel command line only).
func settings(f *flags, log *slog.Logger) (nodeconf.Effective, error) {
	cfg, err := nodeconf.Load(f.config)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nodeconf.Effective{}, err
		}
		log.Warn("no config file; using the kernel command line and flags only", "config", f.config)
		cfg = nil
	}
	var cl nodeconf.Cmdline
	if f.cmdline != "" {
		if c, err := nodeconf.ReadCmdline(f.cmdline); err == nil {
			cl = c
		} else {
			log.Debug("kernel command line", "err", err)
		}
	}
	return nodeconf.Merge(cfg, cl, f.server), nil
}

func newAgent(f *flags, eff nodeconf.Effective, log *slog.Logger) (*agent.Agent, error) {
	servers, err := nodeconf.ServerURLs(eff.Server)
	if err != nil {
		return nil, fmt.Errorf("server: %w (set server in %s, wwserver= on the kernel command line, or --server)", err, f.config)
	}
	lo, hi := eff.Config.SourcePorts()
	pin := ""
	if eff.Config.TLSPort > 0 {
		// Never plain HTTP then: the server refuses it, and the overlay is private.
		servers, pin = nodeconf.WithTLS(servers, eff.Config.TLSPort), eff.Config.TLSPin()
	}
	stateDir := f.stateDir
	if f.once {
		stateDir = ""
	}
	var relabel func(context.Context, []string) error
	if f.root == "/" {
		if r, why := selabel.New(); r != nil {
			relabel = r.Relabel
			log.Info("SELinux: the runtime overlay's files get their policy labels", "restorecon", r.Restorecon)
		} else {
			log.Debug("SELinux labels not set", "reason", why)
		}
	}
	return agent.New(agent.Options{
		Relabel:    relabel,
		Servers:    servers,
		MAC:        eff.MAC,
		Node:       eff.Config.Node,
		AssetKey:   assetKey(eff.Config.AssetKey, f.dmiAssetTag),
		Root:       f.root,
		Version:    version(),
		Interval:   eff.Config.Interval(),
		HTTPClient: agent.NewHTTPClient(agent.ClientOptions{Secure: eff.Config.Secure, PortMin: lo, PortMax: hi, TLSPin: pin}),
		StateDir:   stateDir,
		Apply:      apply.Options{NoOwner: os.Geteuid() != 0},
		Logger:     log,
		Notify: func(state string) error {
			_, err := daemon.SdNotify(false, state)
			return err
		},
	})
}

// waitNetwork waits for the primary interface (loading its driver and
// configuring its address when needed). netwait logs an ERROR naming the MAC
// and the interfaces seen while it is missing. After the network timeout the
// agent tries the server anyway, and the wait goes on in the background (a
// driver loaded later still gets its interface configured) until ctx ends.
func waitNetwork(ctx context.Context, eff nodeconf.Effective, log *slog.Logger) {
	mac, err := net.ParseMAC(eff.MAC)
	if err != nil {
		log.Warn("no usable node MAC; not waiting for the network", "mac", eff.MAC)
		return
	}
	t := netwait.Target{HWAddr: mac, Configure: eff.Config.ConfigureNetwork()}
	if p, ok := eff.Config.Primary(); ok && (p.HWAddr == "" || p.HWAddr == eff.MAC) && p.IPAddr != "" {
		bits := 24
		if p.Netmask != "" {
			if n, err := nodeconf.PrefixLen(p.Netmask); err == nil {
				bits = n
			}
		}
		t.Addr = &net.IPNet{IP: net.ParseIP(p.IPAddr).To4(), Mask: net.CIDRMask(bits, 32)}
		if p.Gateway != "" {
			t.Gateway = net.ParseIP(p.Gateway).To4()
		}
	}
	o := netwait.Options{
		Logger: log,
		LoadDrivers: func(ctx context.Context) error {
			_, err := kmod.LoadNetworkDrivers(ctx, kmod.Options{Logger: log})
			return err
		},
	}
	tctx, cancel := context.WithTimeout(ctx, eff.Config.NetTimeout())
	defer cancel()
	_, err = netwait.Wait(tctx, t, o)
	if err == nil || ctx.Err() != nil {
		return
	}
	log.Error("network not ready; trying the server anyway and still waiting for the interface", "hwaddr", eff.MAC, "err", err)
	go func() {
		if _, err := netwait.Wait(ctx, t, o); err != nil && ctx.Err() == nil {
			log.Error("network wait", "err", err)
		}
	}()
}

// assetKey is the configured key, else the SMBIOS chassis asset tag (as
// Warewulf does): the key then never travels in a served overlay.
func assetKey(configured, dmiPath string) string {
	if configured != "" || dmiPath == "" {
		return configured
	}
	b, err := os.ReadFile(dmiPath)
	if err != nil {
		return ""
	}
	tag := strings.TrimSpace(string(b))
	switch strings.ToLower(tag) {
	case "", "not specified", "none", "default string", "no asset tag":
		return ""
	}
	return tag
}
