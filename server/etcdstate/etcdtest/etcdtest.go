// Package etcdtest runs a real etcd (go.etcd.io/etcd/server/v3/embed) on
// loopback for tests: one member or a cluster of several (real Raft, each
// member fsyncing its own WAL), in process (Start, StartCluster) or as a
// child process that a test can SIGKILL and restart on the same data
// directory (StartProcess, StartClusterProcessIn).
package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Etcd is a running test etcd.
type Etcd struct {
	Endpoint  string   // http://127.0.0.1:PORT (the first member's)
	Endpoints []string // every member's
	Dir       string
	e         *embed.Etcd
}

// freePort asks the kernel for an unused loopback port. Another process may
// take it before etcd binds it; Start retries on a bind error.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func config(dir, host string, clientPort, peerPort int) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.Name = "test"
	cu, _ := url.Parse("http://" + net.JoinHostPort(host, strconv.Itoa(clientPort)))
	pu, _ := url.Parse("http://" + net.JoinHostPort(host, strconv.Itoa(peerPort)))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "panic" // shutdown logs "errors" that are not
	cfg.EnableGRPCGateway = false
	return cfg
}

// Run starts an embedded etcd in dir on the given ports and blocks until it
// stops. It is what the child process of StartProcess runs.
func Run(dir, host string, clientPort, peerPort int) error {
	e, err := embed.StartEtcd(config(dir, host, clientPort, peerPort))
	if err != nil {
		return err
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		return errors.New("etcd not ready after 60 s")
	}
	fmt.Println("ETCD READY")
	return <-e.Err()
}

// Start runs etcd inside the test process; it is closed at the end of the test.
func Start(t testing.TB) *Etcd {
	t.Helper()
	dir := t.TempDir()
	var lastErr error
	for try := 0; try < 5; try++ {
		cp, err1 := freePort()
		pp, err2 := freePort()
		if err1 != nil || err2 != nil {
			t.Fatalf("free port: %v %v", err1, err2)
		}
		e, err := embed.StartEtcd(config(dir, "127.0.0.1", cp, pp))
		if err != nil {
			lastErr = err
			os.RemoveAll(dir)
			os.MkdirAll(dir, 0o700)
			continue
		}
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(60 * time.Second):
			e.Close()
			t.Fatal("etcd not ready after 60 s")
		}
		t.Cleanup(e.Close)
		return &Etcd{Endpoint: "http://127.0.0.1:" + strconv.Itoa(cp), Dir: dir, e: e}
	}
	t.Fatalf("start etcd: %v", lastErr)
	return nil
}

// ChildEnv is the environment variable that makes a test binary run etcd
// (see MaybeRunChild): "DIR HOST CLIENTPORTS PEERPORTS", the ports one per
// member, separated by commas.
const ChildEnv = "WW_ETCDTEST_CHILD"

// MaybeRunChild must be called from TestMain of a package that uses
// StartProcess: in the child it runs etcd and exits.
func MaybeRunChild() {
	v := os.Getenv(ChildEnv)
	if v == "" {
		return
	}
	f := strings.Fields(v)
	if len(f) != 4 {
		fmt.Fprintln(os.Stderr, "bad", ChildEnv, v)
		os.Exit(2)
	}
	cps, err1 := splitPorts(f[2])
	pps, err2 := splitPorts(f[3])
	if err := errors.Join(err1, err2); err != nil || len(cps) != len(pps) {
		fmt.Fprintln(os.Stderr, "bad", ChildEnv, v, err)
		os.Exit(2)
	}
	var err error
	if len(cps) == 1 {
		err = Run(f[0], f[1], cps[0], pps[0])
	} else {
		err = RunCluster(f[0], f[1], cps, pps)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Process is etcd in a child process (the test binary re-executed).
type Process struct {
	Endpoint    string   // the first member's
	Endpoints   []string // every member's
	dir         string
	host        string
	prefix      []string // command prefix, e.g. ip netns exec NS
	clientPorts []int
	peerPorts   []int
	cmd         *exec.Cmd
	t           testing.TB
}

// StartProcess starts etcd as a child process; Kill and Restart it at will.
// The package's TestMain must call MaybeRunChild.
func StartProcess(t testing.TB) *Process {
	t.Helper()
	cp, err1 := freePort()
	pp, err2 := freePort()
	if err1 != nil || err2 != nil {
		t.Fatalf("free port: %v %v", err1, err2)
	}
	return StartProcessIn(t, nil, "127.0.0.1", cp, pp)
}

// StartProcessIn is StartProcess with a command prefix (e.g. "ip netns
// exec NS" to run etcd inside a test's network namespace) listening on
// host:clientPort.
func StartProcessIn(t testing.TB, prefix []string, host string, clientPort, peerPort int) *Process {
	t.Helper()
	return StartClusterProcessIn(t, prefix, host, []int{clientPort}, []int{peerPort})
}

// StartClusterProcessIn is StartProcessIn for a cluster: one member per
// client and peer port, all in one child process.
func StartClusterProcessIn(t testing.TB, prefix []string, host string, clientPorts, peerPorts []int) *Process {
	t.Helper()
	p := &Process{dir: t.TempDir(), host: host, prefix: prefix, clientPorts: clientPorts, peerPorts: peerPorts, t: t}
	for _, cp := range clientPorts {
		p.Endpoints = append(p.Endpoints, "http://"+net.JoinHostPort(host, strconv.Itoa(cp)))
	}
	p.Endpoint = p.Endpoints[0]
	t.Cleanup(func() { p.Kill() })
	p.Restart()
	return p
}

// Restart starts the child again on the same data directory and ports.
func (p *Process) Restart() {
	p.t.Helper()
	args := append(append([]string{}, p.prefix...), os.Args[0], "-test.run=^$")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %s %s", ChildEnv, p.dir, p.host, joinPorts(p.clientPorts), joinPorts(p.peerPorts)))
	out, err := cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	// The child dies with the test process, also when a test timeout's
	// panic ends it before any Cleanup runs (it was left running etcd).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd = cmd
	ready := make(chan error, 1)
	go func() {
		buf := make([]byte, 256)
		var got []byte
		for {
			n, err := out.Read(buf)
			got = append(got, buf[:n]...)
			if strings.Contains(string(got), "ETCD READY") {
				ready <- nil
				// keep draining so the child never blocks on stdout
				for {
					if _, err := out.Read(buf); err != nil {
						return
					}
				}
			}
			if err != nil {
				ready <- fmt.Errorf("etcd child exited before ready: %w", err)
				return
			}
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			p.t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		p.Kill()
		p.t.Fatal("etcd child not ready after 60 s")
	}
}

// Kill sends SIGKILL to the child and waits for it.
func (p *Process) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}
