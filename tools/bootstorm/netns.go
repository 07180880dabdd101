package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// namespaces are the storm's two network namespaces, named after this
// process: the server's and the clients', joined by a veth. No storm
// traffic leaves them.
type namespaces struct {
	server, client string
	made           []string
}

// newNamespaces creates the pair (iproute2's ip) and brings the veth up.
// On error everything made so far is removed.
func newNamespaces(ctx context.Context, pid int, p netPlan) (ns *namespaces, err error) {
	base := fmt.Sprintf("wwstorm-%d", pid)
	ns = &namespaces{server: base + "-s", client: base + "-c"}
	defer func() {
		if err != nil {
			ns.remove(slog.New(slog.NewTextHandler(os.Stderr, nil)))
		}
	}()
	ip := func(args ...string) error {
		out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}
	for _, n := range []string{ns.server, ns.client} {
		if err := ip("netns", "add", n); err != nil {
			return nil, err
		}
		ns.made = append(ns.made, n)
	}
	pfx := fmt.Sprintf("/%d", p.PrefixLen)
	steps := [][]string{
		{"-n", ns.server, "link", "add", p.ServerIf, "type", "veth", "peer", "name", p.ClientIf, "netns", ns.client},
		{"-n", ns.server, "addr", "add", p.ServerIP + pfx, "dev", p.ServerIf},
		{"-n", ns.client, "addr", "add", p.ClientIP + pfx, "dev", p.ClientIf},
		{"-n", ns.server, "link", "set", "lo", "up"},
		{"-n", ns.client, "link", "set", "lo", "up"},
		{"-n", ns.server, "link", "set", p.ServerIf, "up"},
		{"-n", ns.client, "link", "set", p.ClientIf, "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return nil, err
		}
	}
	// Thousands of nodes: room in the neighbour tables and the accept
	// queue. Best effort: these are per-namespace on current kernels.
	for _, n := range []string{ns.server, ns.client} {
		for _, kv := range []string{"net.ipv4.neigh.default.gc_thresh1=16384", "net.ipv4.neigh.default.gc_thresh2=32768",
			"net.ipv4.neigh.default.gc_thresh3=65536", "net.core.somaxconn=16384", "net.ipv4.ip_local_port_range=1024 65000"} {
			_ = exec.CommandContext(ctx, "ip", "netns", "exec", n, "sysctl", "-q", "-w", kv).Run()
		}
	}
	// The simulated nodes are one host: their receive buffers all count
	// against its tcp_mem, which a real node's do not. With this machine's
	// tcp_rmem maximum (32 MiB) thousands of their connections drove TCP
	// into memory pressure: receive-queue drops (TcpExt TCPRcvQDrop,
	// PruneCalled), retransmissions lost again, RTO backoff, and one node
	// waited 80 s for its network drivers in the 1,000-node storm.
	if p.NodeRmem > 0 {
		kv := fmt.Sprintf("net.ipv4.tcp_rmem=4096 %d %d", min(131072, p.NodeRmem), p.NodeRmem)
		if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns.client, "sysctl", "-q", "-w", kv).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("sysctl %s in %s: %w: %s", kv, ns.client, err, bytes.TrimSpace(out))
		}
	}
	if err := waitCarrier(ctx, ns.client, p.ClientIf); err != nil {
		return nil, err
	}
	return ns, nil
}

func waitCarrier(ctx context.Context, ns, ifname string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, "ip", "-n", ns, "-o", "link", "show", "dev", ifname).CombinedOutput()
		if err == nil && bytes.Contains(out, []byte("LOWER_UP")) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s in %s has no carrier: %s", ifname, ns, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// remove deletes the namespaces (and with them the veth).
func (ns *namespaces) remove(log *slog.Logger) {
	for _, n := range ns.made {
		if out, err := exec.Command("ip", "netns", "del", n).CombinedOutput(); err != nil {
			log.Warn("remove namespace", "ns", n, "err", err, "out", string(out))
		}
	}
	ns.made = nil
}

// nsCommand runs name in namespace ns; it is killed if bootstorm dies.
func nsCommand(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// serverProc is a server (wwserver or nginx) running in the server
// namespace. `ip netns exec` execs it, so its PID is the server's.
type serverProc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

func startServer(name, ns, logPath, bin string, args ...string) (*serverProc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	s := &serverProc{name: name, logPath: logPath, done: make(chan struct{})}
	s.cmd = nsCommand(context.Background(), ns, bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	return s, nil
}

func (s *serverProc) pid() int { return s.cmd.Process.Pid }

// alive is nil while the server runs.
func (s *serverProc) alive() error {
	select {
	case <-s.done:
		if s.err == nil {
			return errors.New("exited")
		}
		return s.err
	default:
		return nil
	}
}

// stop sends SIGTERM and waits (SIGKILL after 30 s).
func (s *serverProc) stop(log *slog.Logger) {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		log.Warn("server did not stop on SIGTERM; killing it", "server", s.name, "pid", s.pid())
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
