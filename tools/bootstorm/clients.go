package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/tools/internal/procstat"
)

// Modes of a storm.
const (
	modeFull = "full" // DHCP, TFTP, iPXE's DHCP, then HTTP: against wwserver
	modeHTTP = "http" // from the iPXE script on: against wwserver or a plain web server
	modeRaw  = "raw"  // one big static file per node, in ranges: the network's rate
)

// maxNodes bounds a storm.
const maxNodes = 20000

// clientConfig is what the client side of a storm (run inside the client
// namespace) is told by the orchestrator, as JSON.
type clientConfig struct {
	Mode            string        `json:"mode"`
	Target          string        `json:"target"` // "wwserver" or "nginx": for the report
	Iface           string        `json:"iface"`  // client interface (DHCP socket, node addresses)
	Base            string        `json:"base"`   // http://server:port (readiness; HTTP-only script URLs)
	Nodes           []nodeSpec    `json:"nodes"`
	Arrival         string        `json:"arrival"` // "all" or "ramp"
	Ramp            time.Duration `json:"ramp"`
	DHCPTimeout     time.Duration `json:"dhcp_timeout"`
	DHCPTries       int           `json:"dhcp_tries"`
	TFTPBlockSize   int           `json:"tftp_blksize"`
	TFTPTimeout     time.Duration `json:"tftp_timeout"`
	TFTPRetries     int           `json:"tftp_retries"`
	ImageBytes      int64         `json:"image_bytes"` // >0: each node reads only this much of the image (Range; two-stage: the leading chunks)
	Verify          bool          `json:"verify"`      // two-stage: check each chunk's sha256
	Stage2Parallel  int           `json:"stage2_parallel"`
	RawPath         string        `json:"raw_path"` // raw mode: the image's chunks as one file
	PollInterval    time.Duration `json:"poll_interval"`
	PollFor         time.Duration `json:"poll_for"`
	Secure          bool          `json:"secure"`
	RequestTimeout  time.Duration `json:"request_timeout"`
	DownloadTimeout time.Duration `json:"download_timeout"`
	Timeout         time.Duration `json:"timeout"` // whole storm
	ServerPID       int           `json:"server_pid"`
}

// nodeSpec is a node as listed in the tree.
type nodeSpec struct {
	MAC string `json:"mac"`
	IP  string `json:"ip"`
}

func (c *clientConfig) check() error {
	switch {
	case c.Mode != modeFull && c.Mode != modeHTTP && c.Mode != modeRaw:
		return fmt.Errorf("mode %q: want %s, %s or %s", c.Mode, modeFull, modeHTTP, modeRaw)
	case c.Mode == modeRaw && c.RawPath == "":
		return errors.New("mode raw: no raw file")
	case len(c.Nodes) == 0 || len(c.Nodes) > maxNodes:
		return fmt.Errorf("%d nodes: want 1..%d", len(c.Nodes), maxNodes)
	case c.Arrival != "all" && c.Arrival != "ramp":
		return fmt.Errorf("arrival %q: want all or ramp", c.Arrival)
	case c.Timeout <= 0 || c.Timeout > 2*time.Hour:
		return fmt.Errorf("timeout %s: want (0, 2h]", c.Timeout)
	case c.Ramp < 0 || c.Ramp >= c.Timeout:
		return fmt.Errorf("ramp %s: want [0, timeout)", c.Ramp)
	case c.PollFor < 0 || c.PollFor >= c.Timeout:
		return fmt.Errorf("poll-for %s: want [0, timeout)", c.PollFor)
	case c.PollInterval < 0 || (c.PollFor > 0 && c.PollInterval < 100*time.Millisecond):
		return fmt.Errorf("poll-interval %s: want >= 100ms", c.PollInterval)
	case c.TFTPBlockSize < 8 || c.TFTPBlockSize > 65464:
		return fmt.Errorf("tftp blksize %d: want 8..65464", c.TFTPBlockSize)
	case c.DHCPTimeout <= 0 || c.DHCPTries < 1 || c.RequestTimeout <= 0 || c.DownloadTimeout <= 0 || c.TFTPTimeout <= 0:
		return errors.New("timeouts and tries must be positive")
	}
	return nil
}

// Report is one storm's result (bootstorm's JSON output).
type Report struct {
	Target           string        `json:"target"`
	Mode             string        `json:"mode"`
	Nodes            int           `json:"nodes"`
	Arrival          string        `json:"arrival"`
	RampSeconds      float64       `json:"ramp_seconds"`
	ImageBytes       int64         `json:"image_bytes_per_node"` // 0: whole image
	PollIntervalS    float64       `json:"poll_interval_seconds"`
	PollForS         float64       `json:"poll_for_seconds"`
	Started          int           `json:"started"`
	Booted           int           `json:"booted"`
	FailedNodes      int           `json:"failed_nodes"`
	AllBootedSeconds float64       `json:"all_booted_seconds"` // first node started to last node booted
	WallSeconds      float64       `json:"wall_seconds"`       // whole run, polling included
	Stages           []StageReport `json:"stages"`
	BytesTotal       int64         `json:"bytes_total"`
	ServerCPUSeconds float64       `json:"server_cpu_seconds"`
	ServerPeakRSS    int64         `json:"server_peak_rss_bytes"` // since the server started
	ClientCPUSeconds float64       `json:"client_cpu_seconds"`
	OtherCPUSeconds  float64       `json:"other_cpu_seconds"` // the rest of the machine meanwhile (shared machines)
	DHCPUnmatched    int64         `json:"dhcp_unmatched"`
	DHCPMalformed    int64         `json:"dhcp_malformed"`
	DHCPClientDrops  int64         `json:"dhcp_client_socket_drops"` // replies our socket dropped (-1: unknown)
	DHCPServerDrops  int64         `json:"dhcp_server_socket_drops"` // requests the server's port 67 socket dropped, since it started (-1: unknown)
	TFTPServerDrops  int64         `json:"tftp_server_socket_drops"` // the same for port 69
	Commit           string        `json:"commit,omitempty"`
	Network          string        `json:"network,omitempty"` // TCP counters' changes during the run (tcpstats.go)
}

// runClients reads a clientConfig (JSON) from in, plays the storm and
// writes the Report (JSON) to out. Progress goes to progress.
func runClients(in io.Reader, out, progress io.Writer) error {
	var cfg clientConfig
	if err := json.NewDecoder(io.LimitReader(in, 16<<20)).Decode(&cfg); err != nil {
		return fmt.Errorf("read client config: %w", err)
	}
	if err := cfg.check(); err != nil {
		return err
	}
	nodes := make([]simNode, len(cfg.Nodes))
	for i, n := range cfg.Nodes {
		mac, err := net.ParseMAC(n.MAC)
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		nodes[i] = simNode{MAC: mac}
		if cfg.Mode != modeFull && n.IP != "" {
			if nodes[i].IP = net.ParseIP(n.IP).To4(); nodes[i].IP == nil {
				return fmt.Errorf("node %s: bad IP %q", n.MAC, n.IP)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	if err := waitHTTP(ctx, cfg.Base+nodeapi.Healthz, 60*time.Second); err != nil {
		return err
	}
	r := &runner{cfg: cfg}
	if cfg.Iface != "" {
		add, err := addressAdder(cfg.Iface)
		if err != nil {
			return err
		}
		r.addrs = add
	}
	if cfg.Mode == modeFull {
		p, err := listenDHCP(cfg.Iface)
		if err != nil {
			return err
		}
		defer p.Close()
		r.dhcp = p
	}

	pids := []int(nil)
	if cfg.ServerPID > 0 {
		pids = procstat.Tree(cfg.ServerPID)
	}
	cpu0, _ := procstat.Usage(pids)
	self0, busy0 := selfCPU(), procstat.MachineBusy(false)
	start := time.Now()
	r.stats = NewStats(start)
	stopProgress := showProgress(progress, r.stats)

	var wg sync.WaitGroup
	for i, n := range nodes {
		delay := time.Duration(0)
		if cfg.Arrival == "ramp" && len(nodes) > 1 {
			delay = cfg.Ramp * time.Duration(i) / time.Duration(len(nodes)-1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if delay > 0 {
				t := time.NewTimer(delay)
				defer t.Stop()
				select {
				case <-t.C:
				case <-ctx.Done():
					return
				}
			}
			r.boot(ctx, n)
		}()
	}
	wg.Wait()
	stopProgress()

	rep := Report{Target: cfg.Target, Mode: cfg.Mode, Nodes: len(nodes), Arrival: cfg.Arrival, RampSeconds: cfg.Ramp.Seconds(),
		ImageBytes: cfg.ImageBytes, PollIntervalS: cfg.PollInterval.Seconds(), PollForS: cfg.PollFor.Seconds(),
		WallSeconds: time.Since(start).Seconds(), ClientCPUSeconds: selfCPU() - self0}
	r.stats.Report(&rep)
	cpu1, rss := procstat.Usage(pids)
	rep.ServerCPUSeconds, rep.ServerPeakRSS = cpu1-cpu0, rss
	if busy0 >= 0 {
		if busy1 := procstat.MachineBusy(false); busy1 >= 0 {
			rep.OtherCPUSeconds = max(0, busy1-busy0-rep.ServerCPUSeconds-rep.ClientCPUSeconds)
		}
	}
	if r.dhcp != nil {
		rep.DHCPUnmatched, rep.DHCPMalformed = r.dhcp.unmatched.Load(), r.dhcp.malformed.Load()
		rep.DHCPClientDrops = udpDrops(68)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// waitHTTP polls u until any HTTP answer arrives (the server listens).
func waitHTTP(ctx context.Context, u string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server at %s not answering: %w", u, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// addressAdder returns a function that adds a node's address (/32) to
// iface, as the node's own OS would after DHCP, so its connections come
// from its own address (and secure mode's 424 privileged ports are per
// node, not shared by all).
func addressAdder(iface string) (func(net.IP) error, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	link, err := h.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	var mu sync.Mutex
	added := map[string]bool{}
	return func(ip net.IP) error {
		mu.Lock()
		defer mu.Unlock()
		if added[ip.String()] {
			return nil
		}
		err := h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}})
		if err != nil && !errors.Is(err, syscall.EEXIST) {
			return err
		}
		added[ip.String()] = true
		return nil
	}, nil
}

// showProgress prints a progress line every second (rewritten in place on
// a terminal, every 5 s otherwise) until the returned stop is called.
func showProgress(w io.Writer, s *Stats) (stop func()) {
	tty := false
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		tty = err == nil
	}
	every := 5 * time.Second
	if tty {
		every = time.Second
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprintf(w, "\r\033[K%s\n", s.Progress(time.Now()))
				} else {
					fmt.Fprintln(w, s.Progress(time.Now()))
				}
				return
			case now := <-t.C:
				if tty {
					fmt.Fprintf(w, "\r\033[K%s", s.Progress(now))
				} else {
					fmt.Fprintln(w, s.Progress(now))
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-finished }) }
}

// selfCPU is this process's user+system CPU time in seconds.
func selfCPU() float64 {
	cpu, err := procstat.CPU(os.Getpid())
	if err != nil {
		return 0
	}
	return cpu
}
