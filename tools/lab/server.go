package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wwcluster/ww/server/nodeapi"
)

// StartServer starts `wwserver serve --root TREE` inside the namespace, its
// output going to Dir/wwserver.log, and waits until GET /healthz answers 200
// (or the process exits, or ctx ends).
func (l *Lab) StartServer(ctx context.Context) (*Proc, error) {
	if l.TreeDir == "" {
		return nil, errors.New("StartServer before WriteTree")
	}
	logPath := filepath.Join(l.Dir, "wwserver.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own copy
	cmd := l.nsCommand(l.Paths.Wwserver, "serve", "--root", l.TreeDir, "--listen", fmt.Sprintf(":%d", l.Port))
	cmd.Stdout, cmd.Stderr = f, f
	p, err := startProc(l.Log, "wwserver", cmd, logPath, false)
	if err != nil {
		return nil, err
	}
	if err := l.track(p); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.server = p
	l.mu.Unlock()
	if err := l.waitHealthy(ctx, p); err != nil {
		return p, fmt.Errorf("wwserver not healthy: %w\n%s", err, Tail(logPath, 30))
	}
	l.Log.Info("wwserver ready", "url", l.ServerURL())
	return p, nil
}

// StopServer stops the wwserver that StartServer started (SIGTERM to its
// PID, SIGKILL after 5 s). Close does it too.
func (l *Lab) StopServer() {
	l.mu.Lock()
	p := l.server
	l.mu.Unlock()
	if p != nil {
		p.Stop(5 * time.Second)
	}
}

// KillServer sends SIGKILL to the wwserver that StartServer started (a
// crash: no graceful shutdown) and waits for it to exit.
func (l *Lab) KillServer() {
	l.mu.Lock()
	p := l.server
	l.mu.Unlock()
	if p != nil && !p.Exited() {
		_ = p.Cmd.Process.Kill()
		<-p.Done()
	}
}

// ServerLog is the path of wwserver's output.
func (l *Lab) ServerLog() string { return filepath.Join(l.Dir, "wwserver.log") }

func (l *Lab) waitHealthy(ctx context.Context, p *Proc) error {
	c := l.HTTPClient()
	var last error
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, l.ServerURL()+nodeapi.Healthz, nil)
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return nil
			}
			err = fmt.Errorf("GET /healthz: %s", resp.Status)
		}
		cancel()
		last = err
		select {
		case <-p.Done():
			return fmt.Errorf("wwserver exited: %v", p.Err())
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// StatusCommand is the command that shows `wwserver status` for this lab
// from any root shell of the host. wwserver listens inside the lab's
// namespace only, so a plain `wwserver status` on the host finds nothing
// (no tree at /var/lib/wwserver, no server on the host's loopback); the
// command runs the status client in the namespace and names the server.
// The lab runs it itself (StatusText, Status), so the printed command is
// the one known to work.
func (l *Lab) StatusCommand() []string {
	return []string{"ip", "netns", "exec", l.NS, l.Paths.Wwserver, "status", "--server", l.ServerURL()}
}

// Status runs StatusCommand with --json and returns its output, decoded.
func (l *Lab) Status(ctx context.Context) (*Status, error) {
	out, err := l.runCommand(ctx, append(l.StatusCommand(), "--json"))
	if err != nil {
		return nil, err
	}
	return ParseStatus(out)
}

// StatusText runs StatusCommand (the human table).
func (l *Lab) StatusText(ctx context.Context) (string, error) {
	out, err := l.runCommand(ctx, l.StatusCommand())
	return string(out), err
}

// runCommand runs a short command and returns its stdout; the error names
// the command and includes its stderr.
func (l *Lab) runCommand(ctx context.Context, argv []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", ShellQuote(argv), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// ShellQuote joins argv into one line a POSIX shell reads back as argv:
// words of safe characters as they are, others in single quotes.
func ShellQuote(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		safe := a != ""
		for _, c := range a {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./:=@%+,", c)) {
				safe = false
				break
			}
		}
		if safe {
			words[i] = a
		} else {
			words[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(words, " ")
}

// RuntimeOverlay fetches GET /overlay/runtime/{mac} as a node would (from a
// privileged source port) and returns its ETag and its regular files.
func (l *Lab) RuntimeOverlay(ctx context.Context, mac string) (string, map[string][]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, nodeapi.RuntimeOverlay.URL(l.ServerURL(), mac), nil)
	if err != nil {
		return "", nil, err
	}
	resp, err := l.PrivilegedHTTPClient().Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", nil, fmt.Errorf("GET %s: %s: %s", nodeapi.RuntimeOverlay.Path(mac), resp.Status, bytes.TrimSpace(body))
	}
	files, err := ReadNewc(resp.Body)
	if err != nil {
		return "", nil, fmt.Errorf("runtime overlay of %s: %w", mac, err)
	}
	return resp.Header.Get("ETag"), files, nil
}

// HTTPClient returns a client whose connections are made inside the lab's
// namespace, for talking to wwserver directly (e.g. /healthz, /status).
func (l *Lab) HTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: l.DialContext, DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
}

// PrivilegedHTTPClient is HTTPClient with connections from a source port
// below 1024, as secure mode wants for the runtime overlay (the lab runs as
// root, like wwclient on a node).
func (l *Lab) PrivilegedHTTPClient() *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var last error
		for port := 1023; port >= 900; port-- {
			c, err := l.dialNS(ctx, network, addr, &net.TCPAddr{Port: port})
			if err == nil {
				return c, nil
			}
			last = err
			if !errors.Is(err, unix.EADDRINUSE) {
				return nil, err
			}
		}
		return nil, last
	}
	return &http.Client{
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
		Timeout:   30 * time.Second,
	}
}

// DialContext dials from inside the lab's namespace: the socket is created
// on an OS thread switched into the namespace and back, and keeps that
// namespace for its whole life.
//
// The thread is switched back (rather than discarded) on purpose: processes
// the lab starts have Pdeathsig set, which fires when the OS thread that
// forked them exits, and Go may have forked them on this very thread.
func (l *Lab) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return l.dialNS(ctx, network, addr, nil)
}

func (l *Lab) dialNS(ctx context.Context, network, addr string, local net.Addr) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, fmt.Errorf("open own netns: %w", err)}
			return
		}
		defer unix.Close(orig)
		fd, err := unix.Open(filepath.Join("/run/netns", l.NS), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, fmt.Errorf("open netns %s: %w", l.NS, err)}
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, fmt.Errorf("setns %s: %w", l.NS, err)}
			return
		}
		d := net.Dialer{LocalAddr: local}
		c, err := d.DialContext(ctx, network, addr)
		if rerr := unix.Setns(orig, unix.CLONE_NEWNET); rerr == nil {
			runtime.UnlockOSThread()
		} else {
			// Stay locked: the thread exits with this goroutine
			// instead of running other code in the wrong namespace.
			l.Log.Error("could not switch a thread back from the lab namespace", "err", rerr)
		}
		ch <- res{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// Status is the JSON of `wwserver status --json` (GET /status), as
// server/status reports it. It is decoded here on its own so that the lab
// depends on the JSON contract only.
type Status struct {
	Now                   int64        `json:"now"`
	UpdateIntervalSeconds int64        `json:"update_interval_seconds"`
	Nodes                 []NodeStatus `json:"nodes"`
	Unknown               []NodeStatus `json:"unknown"`

	Raw json.RawMessage `json:"-"`
}

// NodeStatus is one node (or unknown MAC) in Status.
type NodeStatus struct {
	Name      string     `json:"name"`
	MAC       string     `json:"mac"`
	IPAddr    string     `json:"ipaddr"`
	Stage     string     `json:"stage"`
	Sent      string     `json:"sent"`
	LastSeen  int64      `json:"last_seen"`
	Heartbeat *Heartbeat `json:"heartbeat"`
	Server    string     `json:"server"` // server_id of the server that saw it last (etcd backend)
}

// Heartbeat is the last heartbeat a node sent.
type Heartbeat = nodeapi.AgentState

// ParseStatus decodes the JSON of `wwserver status --json`.
func ParseStatus(data []byte) (*Status, error) {
	var s Status
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("wwserver status --json: %w: %.200s", err, data)
	}
	s.Raw = append(json.RawMessage(nil), data...)
	return &s, nil
}

// Node returns the configured node called name.
func (s *Status) Node(name string) (NodeStatus, bool) {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return NodeStatus{}, false
}

// UnknownMAC returns the unknown entry for mac (any case, ':' or '-').
func (s *Status) UnknownMAC(mac string) (NodeStatus, bool) {
	want := normMAC(mac)
	for _, n := range s.Unknown {
		if normMAC(n.MAC) == want || normMAC(n.Name) == want {
			return n, true
		}
	}
	return NodeStatus{}, false
}

func normMAC(m string) string {
	return strings.ToLower(strings.ReplaceAll(m, "-", ":"))
}

// WaitStatus polls Status every second until ok returns true for it, or ctx
// ends (the error then includes the last status).
func (l *Lab) WaitStatus(ctx context.Context, what string, ok func(*Status) bool) (*Status, error) {
	var last *Status
	var lastErr error
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := l.Status(qctx)
		cancel()
		if err == nil {
			last = st
			if ok(st) {
				return st, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			raw := "(none)"
			if last != nil {
				raw = string(last.Raw)
			}
			return last, fmt.Errorf("waiting for status: %s: %w (last error: %v; last status: %s)", what, ctx.Err(), lastErr, raw)
		case <-t.C:
		}
	}
}
