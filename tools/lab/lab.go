// Package lab is the QEMU PXE lab: a private network namespace with a bridge
// carrying wwserver's address, one tap per VM, wwserver serving a tree with
// its built-in DHCP and TFTP, and QEMU nodes booting from it with real
// firmware (SeaBIOS + iPXE ROM, or OVMF's own PXE). It is used by `make lab`
// (tools/lab/cmd/lab) and by the integration tests.
//
// All traffic stays inside the namespace the lab creates. Every process the
// lab starts is stopped by its PID in Close, which also deletes the namespace
// (and with it the bridge and the taps).
package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Lab network defaults. They are only ever used inside the lab's own
// namespace, so every lab can use the same ones.
const (
	DefaultServerIP = "10.99.0.1"
	DefaultPrefix   = 24
	DefaultNetmask  = "255.255.255.0"
	DefaultPort     = 9873
	BridgeName      = "wwbr0"
	// Pool handed to unknown MACs by the server's DHCP.
	DefaultRangeStart = "10.99.0.100"
	DefaultRangeEnd   = "10.99.0.150"
	nsPrefix          = "wwlab-"
)

var nsSeq atomic.Int64

// Options for New.
type Options struct {
	// Dir is the lab's work directory (served tree, logs, firmware
	// variable stores). Empty: a new temporary directory, removed by Close
	// unless Keep is set.
	Dir string
	// Keep leaves Dir in place on Close.
	Keep bool
	// Paths of the binaries, image and firmware; see FindPaths.
	Paths Paths
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Lab is one network namespace with a bridge, and the processes started in it.
type Lab struct {
	NS       string // network namespace name
	Bridge   string // bridge inside NS, carrying ServerIP
	ServerIP string
	Port     int
	Dir      string // work directory
	TreeDir  string // the served tree (Dir/tree) once WriteTree ran
	Paths    Paths
	Log      *slog.Logger

	keep     bool
	tmpDir   bool
	mu       sync.Mutex
	procs    []*Proc
	taps     int
	closed   bool
	server   *Proc
	nsReady  bool
	profiles map[string]any
}

// New creates the namespace (wwlab-<pid>-<n>) with loopback up and a bridge
// carrying ServerIP/24. On error nothing is left behind.
func New(ctx context.Context, opts Options) (*Lab, error) {
	l := &Lab{
		NS:       fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), nsSeq.Add(1)),
		Bridge:   BridgeName,
		ServerIP: DefaultServerIP,
		Port:     DefaultPort,
		Paths:    opts.Paths,
		Log:      opts.Logger,
		keep:     opts.Keep,
	}
	if l.Log == nil {
		l.Log = slog.Default()
	}
	l.Log = l.Log.With("ns", l.NS)
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "wwlab-")
		if err != nil {
			return nil, err
		}
		l.Dir, l.tmpDir = d, true
	} else {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, err
		}
		d, err := filepath.Abs(opts.Dir)
		if err != nil {
			return nil, err
		}
		l.Dir = d
	}
	CleanupStale(ctx, l.Log)
	steps := [][]string{
		{"netns", "add", l.NS},
		{"-n", l.NS, "link", "set", "lo", "up"},
		{"-n", l.NS, "link", "add", l.Bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0"},
		{"-n", l.NS, "addr", "add", fmt.Sprintf("%s/%d", l.ServerIP, DefaultPrefix), "dev", l.Bridge},
		{"-n", l.NS, "link", "set", l.Bridge, "up"},
	}
	for i, s := range steps {
		if _, err := run(ctx, "ip", s...); err != nil {
			if i > 0 {
				l.nsReady = true
			}
			_ = l.Close()
			return nil, err
		}
	}
	l.nsReady = true
	l.Log.Info("lab namespace ready", "bridge", l.Bridge, "server_ip", l.ServerIP, "dir", l.Dir)
	return l, nil
}

// ServerURL is wwserver's HTTP base URL as seen inside the namespace.
func (l *Lab) ServerURL() string {
	return fmt.Sprintf("http://%s:%d", l.ServerIP, l.Port)
}

// AddTap creates a tap in the namespace, enslaved to the bridge and up.
func (l *Lab) AddTap(ctx context.Context) (string, error) {
	l.mu.Lock()
	name := fmt.Sprintf("wwtap%d", l.taps)
	l.taps++
	l.mu.Unlock()
	for _, s := range [][]string{
		{"-n", l.NS, "tuntap", "add", "dev", name, "mode", "tap"},
		{"-n", l.NS, "link", "set", name, "master", l.Bridge},
		{"-n", l.NS, "link", "set", name, "up"},
	} {
		if _, err := run(ctx, "ip", s...); err != nil {
			return "", err
		}
	}
	return name, nil
}

// Close stops every process the lab started (SIGTERM, then SIGKILL after a
// grace period, by PID), deletes the namespace and, for a temporary work
// directory without Keep, removes it. It is safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs := append([]*Proc(nil), l.procs...)
	l.mu.Unlock()

	var errs []error
	// VMs first, then the server: reverse start order.
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(5 * time.Second)
	}
	if l.nsReady {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := run(ctx, "ip", "netns", "pids", l.NS); err == nil && strings.TrimSpace(out) != "" {
			l.Log.Warn("processes still in the namespace; not ours to kill", "pids", strings.Fields(out))
		}
		if _, err := run(ctx, "ip", "netns", "del", l.NS); err != nil {
			errs = append(errs, err)
		}
	}
	if l.tmpDir && !l.keep {
		if err := os.RemoveAll(l.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	l.Log.Info("lab torn down")
	return errors.Join(errs...)
}

// CleanupStale deletes namespaces left by earlier lab runs whose process is
// gone (wwlab-<pid>-<n> with no such PID) and that hold no processes.
// Namespaces that still hold processes are only reported.
func CleanupStale(ctx context.Context, log *slog.Logger) {
	out, err := run(ctx, "ip", "netns", "list")
	if err != nil {
		return
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		name := f[0]
		parts := strings.Split(strings.TrimPrefix(name, nsPrefix), "-")
		pid, err := strconv.Atoi(parts[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its owner still runs
		}
		if pids, err := run(ctx, "ip", "netns", "pids", name); err == nil && strings.TrimSpace(pids) != "" {
			log.Warn("stale lab namespace still has processes; leaving it", "stale_ns", name, "pids", strings.Fields(pids))
			continue
		}
		if _, err := run(ctx, "ip", "netns", "del", name); err == nil {
			log.Info("deleted stale lab namespace", "stale_ns", name)
		}
	}
}

// nsCommand builds `ip netns exec NS name args...`. ip execs the command, so
// the PID of the returned command is the PID of name itself.
func (l *Lab) nsCommand(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.NS, name}, args...)...)
}

func (l *Lab) track(p *Proc) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		p.Stop(time.Second)
		return errors.New("lab is closed")
	}
	l.procs = append(l.procs, p)
	return nil
}

// run runs a short command and returns its combined output; the error names
// the command and includes its output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
