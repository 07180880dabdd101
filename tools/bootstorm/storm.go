package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// stormOptions are the storm subcommand's flags.
type stormOptions struct {
	root, wwserver, nginx, out string
	modes                      string
	client                     clientConfig // the per-run settings shared by every run
	n                          int
	plan                       netPlan
	perf                       bool
}

// A run is one storm against one server.
type run struct {
	name   string // e.g. "wwserver-full"
	target string // wwserver or nginx
	mode   string
}

// stormMain parses the storm flags and runs every requested storm in one
// pair of network namespaces that it creates and removes.
func stormMain(args []string, log *slog.Logger) error {
	var o stormOptions
	fs, jsonOut, adaptOnly := o.flags()
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.root == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("storm: -root is required; no arguments")
	}
	if o.n < 1 || o.n > maxNodes {
		return fmt.Errorf("-n %d: want 1..%d", o.n, maxNodes)
	}
	runs, err := parseModes(o.modes, o.nginx != "")
	if err != nil {
		return err
	}
	o.plan.ServerIf, o.plan.ClientIf = "storm-srv", "storm-cli"
	if o.out == "" {
		if o.out, err = os.MkdirTemp("", "bootstorm-"); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if o.client.Secure, err = adaptTree(o.root, o.plan); err != nil || *adaptOnly {
		return err
	}
	if o.client.Nodes, err = treeNodes(o.root, o.n); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ns, err := newNamespaces(ctx, os.Getpid(), o.plan)
	if err != nil {
		return err
	}
	defer ns.remove(log)

	reports, err := o.runAll(ctx, ns, runs, log)
	if len(reports) > 0 {
		table := formatTable(reports)
		fmt.Print(table)
		_ = os.WriteFile(filepath.Join(o.out, "storm.md"), []byte(table), 0o644)
		all, _ := json.MarshalIndent(reports, "", "  ")
		_ = os.WriteFile(filepath.Join(o.out, "storm.json"), all, 0o644)
		if *jsonOut != "" {
			if werr := os.WriteFile(*jsonOut, all, 0o644); werr != nil && err == nil {
				err = werr
			}
		}
		log.Info("reports written", "dir", o.out)
	}
	return err
}

// flags defines the storm subcommand's flags into o.
func (o *stormOptions) flags() (fs *flag.FlagSet, jsonOut *string, adaptOnly *bool) {
	fs = flag.NewFlagSet("storm", flag.ContinueOnError)
	c := &o.client
	fs.StringVar(&o.root, "root", "", "served tree (wwserver init + gentree); its wwserver.toml is adapted to the storm network (required)")
	fs.StringVar(&o.wwserver, "wwserver", "wwserver", "wwserver binary")
	fs.StringVar(&o.nginx, "nginx", "", "nginx binary: also serve the same files with nginx and storm it (mode nginx)")
	fs.StringVar(&o.out, "out", "", "directory for logs, reports and the nginx document root (default: a new temporary directory)")
	fs.StringVar(&o.modes, "modes", "full,http,nginx,raw", "runs, in order: full (DHCP+TFTP+HTTP against wwserver), http (HTTP only against wwserver), nginx (HTTP only against nginx; needs -nginx), raw (every node reads its chunks' bytes as ranges of one static file from nginx, -stage2-parallel at a time: the veth's rate for the same bytes and requests; two-stage images only)")
	fs.IntVar(&o.n, "n", 100, "simulated nodes (the first N of the tree, by name)")
	fs.StringVar(&c.Arrival, "arrival", "all", "all: every node powers on at once (mass reboot); ramp: spread evenly over -ramp")
	fs.DurationVar(&c.Ramp, "ramp", 30*time.Second, "with -arrival ramp: time from the first node's power-on to the last's")
	fs.Int64Var(&c.ImageBytes, "image-bytes", 0, "each node reads only the first N bytes of the image (Range; two-stage: the leading chunks holding N bytes), 0: the whole image")
	fs.BoolVar(&c.Verify, "verify", true, "two-stage: check each chunk's sha256 as wwclient does")
	fs.IntVar(&c.Stage2Parallel, "stage2-parallel", stage2Parallel, "two-stage: chunks fetched at once per node (wwclient's default)")
	fs.DurationVar(&c.PollInterval, "poll-interval", 5*time.Second, "wwclient's interval (heartbeat + runtime overlay with If-None-Match) after boot")
	fs.DurationVar(&c.PollFor, "poll-for", 15*time.Second, "how long each booted node keeps polling (0: not at all)")
	fs.DurationVar(&c.Timeout, "timeout", 20*time.Minute, "bound of each run; nodes not booted by then count as failed")
	fs.DurationVar(&c.DHCPTimeout, "dhcp-timeout", 4*time.Second, "first DHCP timeout; each retry doubles it (PXE: 4, 8, 16, 32 s)")
	fs.IntVar(&c.DHCPTries, "dhcp-tries", 4, "DHCP tries per message")
	fs.IntVar(&c.TFTPBlockSize, "tftp-blksize", 1432, "TFTP block size the firmware asks for")
	fs.DurationVar(&c.TFTPTimeout, "tftp-timeout", 4*time.Second, "TFTP timeout per block")
	fs.IntVar(&c.TFTPRetries, "tftp-retries", 5, "TFTP retries per block")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", 60*time.Second, "HTTP: time to response headers, and whole heartbeat")
	fs.DurationVar(&c.DownloadTimeout, "download-timeout", 10*time.Minute, "HTTP: whole download")
	fs.StringVar(&o.plan.IPXEDir, "ipxe-dir", "/usr/lib/ipxe", "TFTP directory with the iPXE binaries (Debian: ipxe)")
	fs.StringVar(&o.plan.ServerIP, "server-ip", "10.100.0.1", "server address in the storm network (the nodes' subnet)")
	fs.StringVar(&o.plan.ClientIP, "client-ip", "10.100.0.2", "client namespace's own address")
	fs.IntVar(&o.plan.PrefixLen, "prefix", 16, "prefix length of the storm network")
	fs.IntVar(&o.plan.Port, "port", 9873, "HTTP port (of wwserver, then nginx)")
	fs.IntVar(&o.plan.NodeRmem, "node-rmem", 256<<10, "each simulated node's TCP receive buffer maximum in bytes (tcp_rmem in the nodes' namespace: they all share this host's tcp_mem; 0: the host's)")
	jsonOut = fs.String("json", "", "also write all reports as one JSON array to this file")
	adaptOnly = fs.Bool("adapt-only", false, "only adapt the tree's wwserver.toml to the storm network and exit (before a cold `wwserver build`, so that the server does not rebuild what depends on it)")
	fs.BoolVar(&o.perf, "perf", false, "profile the server during each run with perf (perf-RUN.data and perf-RUN.txt in -out)")
	return fs, jsonOut, adaptOnly
}

func parseModes(s string, haveNginx bool) ([]run, error) {
	var runs []run
	for _, m := range strings.Split(s, ",") {
		switch strings.TrimSpace(m) {
		case "full":
			runs = append(runs, run{name: "wwserver-full", target: "wwserver", mode: modeFull})
		case "http":
			runs = append(runs, run{name: "wwserver-http", target: "wwserver", mode: modeHTTP})
		case "nginx":
			if !haveNginx {
				return nil, errors.New("mode nginx needs -nginx")
			}
			runs = append(runs, run{name: "nginx-http", target: "nginx", mode: modeHTTP})
		case "raw":
			if !haveNginx {
				return nil, errors.New("mode raw needs -nginx")
			}
			runs = append(runs, run{name: "nginx-raw", target: "nginx", mode: modeRaw})
		case "":
		default:
			return nil, fmt.Errorf("-modes: unknown %q (want full, http, nginx, raw)", m)
		}
	}
	if len(runs) == 0 {
		return nil, errors.New("-modes: nothing to run")
	}
	for i := 1; i < len(runs); i++ {
		if runs[i-1].target == "nginx" && runs[i].target == "wwserver" {
			return nil, errors.New("-modes: nginx runs come after the wwserver runs (its files are mirrored from wwserver)")
		}
	}
	return runs, nil
}

// runAll runs the storms in order: wwserver's, then (after mirroring what
// wwserver served into a document root) nginx's.
func (o *stormOptions) runAll(ctx context.Context, ns *namespaces, runs []run, log *slog.Logger) ([]Report, error) {
	var reports []Report
	var srv *serverProc
	defer func() {
		if srv != nil {
			srv.stop(log)
		}
	}()
	docroot := filepath.Join(o.out, "docroot")
	for _, r := range runs {
		if r.target == "nginx" && (srv == nil || srv.name != "nginx") {
			if srv == nil {
				var err error
				if srv, err = o.startWwserver(ns); err != nil {
					return reports, err
				}
			}
			log.Info("mirroring what wwserver serves into a document root for nginx", "dir", docroot)
			res, err := o.mirror(ctx, ns, docroot)
			if err != nil {
				return reports, fmt.Errorf("mirror: %w", err)
			}
			o.client.RawPath = res.RawPath
			srv.stop(log)
			if srv, err = o.startNginx(ns, docroot); err != nil {
				srv = nil
				return reports, err
			}
		}
		if srv == nil {
			var err error
			if srv, err = o.startWwserver(ns); err != nil {
				return reports, err
			}
		}
		if r.mode == modeRaw && o.client.RawPath == "" {
			return reports, errors.New("mode raw: the nodes boot no two-stage image (no chunks to read)")
		}
		log.Info("storm", "run", r.name, "nodes", len(o.client.Nodes), "arrival", o.client.Arrival)
		cfg := o.client
		cfg.Mode, cfg.Target, cfg.Iface, cfg.Base, cfg.ServerPID = r.mode, r.target, o.plan.ClientIf, o.plan.base(), srv.pid()
		var rep Report
		stopPerf := o.startPerf(r.name, srv.pid(), log)
		net0 := ns.netSnapshot(ctx, o.plan)
		err := ns.runSelf(ctx, "clients", cfg, &rep)
		rep.Network = netDelta(net0, ns.netSnapshot(ctx, o.plan))
		stopPerf()
		if err != nil {
			return reports, fmt.Errorf("%s: %w", r.name, err)
		}
		if err := srv.alive(); err != nil {
			return reports, fmt.Errorf("%s: server died during the storm: %w (log: %s)", r.name, err, srv.logPath)
		}
		rep.Commit = commit()
		rep.DHCPServerDrops, rep.TFTPServerDrops = -1, -1
		if table, err := nsCommand(ctx, ns.server, "cat", "/proc/net/udp").Output(); err == nil && r.mode == modeFull {
			rep.DHCPServerDrops, rep.TFTPServerDrops = parseUDPDrops(string(table), 67), parseUDPDrops(string(table), 69)
		}
		reports = append(reports, rep)
		b, _ := json.MarshalIndent(rep, "", "  ")
		_ = os.WriteFile(filepath.Join(o.out, "report-"+r.name+".json"), b, 0o644)
	}
	return reports, nil
}

// startPerf records the server's CPU profile (perf record -g) until the
// returned function is called, which also writes the report as text. A
// missing perf is logged, not fatal.
func (o *stormOptions) startPerf(run string, pid int, log *slog.Logger) (stop func()) {
	if !o.perf {
		return func() {}
	}
	data := filepath.Join(o.out, "perf-"+run+".data")
	cmd := exec.Command("perf", "record", "-q", "-F", "499", "-g", "-p", fmt.Sprint(pid), "-o", data)
	if err := cmd.Start(); err != nil {
		log.Warn("perf record", "err", err)
		return func() {}
	}
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		out, err := exec.Command("perf", "report", "-i", data, "--stdio", "--no-children", "--percent-limit", "1",
			"--sort", "symbol", "-g", "none").Output()
		if err != nil {
			log.Warn("perf report", "err", err)
			return
		}
		_ = os.WriteFile(filepath.Join(o.out, "perf-"+run+".txt"), out, 0o644)
	}
}

func (o *stormOptions) startWwserver(ns *namespaces) (*serverProc, error) {
	return startServer("wwserver", ns.server, filepath.Join(o.out, "wwserver.log"),
		o.wwserver, "serve", "--root", o.root, "--log-level", "warn")
}

func (o *stormOptions) startNginx(ns *namespaces, docroot string) (*serverProc, error) {
	prefix := filepath.Join(o.out, "nginx")
	conf, err := writeNginxConf(prefix, docroot, o.plan)
	if err != nil {
		return nil, err
	}
	return startServer("nginx", ns.server, filepath.Join(o.out, "nginx.log"), o.nginx, "-p", prefix, "-c", conf, "-e", "stderr")
}

// mirror fetches, from inside the client namespace, every file the nodes
// get from wwserver and writes it under docroot at the same URL path.
func (o *stormOptions) mirror(ctx context.Context, ns *namespaces, docroot string) (mirrorResult, error) {
	req := mirrorRequest{Base: o.plan.base(), Docroot: docroot, Nodes: o.client.Nodes, Secure: o.client.Secure,
		ClientIP: o.plan.ClientIP, Iface: o.plan.ClientIf}
	var res mirrorResult
	if err := ns.runSelf(ctx, "mirror", req, &res); err != nil {
		return res, err
	}
	if res.Files == 0 {
		return res, errors.New("nothing mirrored")
	}
	return res, nil
}

// commit is the git commit of the working directory, for the report.
func commit() string {
	out, err := exec.Command("git", "log", "-1", "--format=%h").Output()
	if err != nil {
		return ""
	}
	c := strings.TrimSpace(string(out))
	if exec.Command("git", "diff", "--quiet", "HEAD", "--", "server").Run() != nil {
		c += "+local changes"
	}
	return c
}

// runSelf runs this binary's subcommand in the client namespace with in as
// JSON on stdin and decodes its JSON stdout into out; stderr (progress)
// passes through.
func (ns *namespaces) runSelf(ctx context.Context, sub string, in, out any) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	cmd := nsCommand(ctx, ns.client, self, sub)
	cmd.Stdin = bytes.NewReader(b)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bootstorm %s in namespace %s: %w", sub, ns.client, err)
	}
	if err := json.NewDecoder(io.LimitReader(&stdout, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("bootstorm %s: output: %w", sub, err)
	}
	return nil
}
