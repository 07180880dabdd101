// Package agent is the wwclient daemon: every update interval (with
// jitter) it posts a heartbeat and fetches the runtime overlay with
// If-None-Match, applying it when it changed. A server that is down or
// slow is retried with capped exponential backoff and jitter, logged once
// per outage. With several servers (a cluster sharing state through etcd)
// a request that fails for the server's sake (no connection, timeout, 5xx)
// is tried at the next one, and the agent sticks with the one that
// answered.
package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/wwclient/apply"
	"github.com/wwcluster/ww/wwclient/backoff"
)

// Options configure an Agent. Server or Servers, MAC and Root are
// required.
type Options struct {
	Server *url.URL // base URL (nodeconf.ServerURL)
	// Servers are the base URLs of every server, the preferred one first
	// (nodeconf.ServerURLs); when set, Server is ignored.
	Servers  []*url.URL
	MAC      string // node's MAC, lower-case colon form
	Node     string
	AssetKey string // sent as ?assetkey= when set
	Root     string // where the runtime overlay is applied
	Version  string
	Interval time.Duration // default 60 s
	// JitterFraction spreads the interval by ±fraction (default 0.1).
	JitterFraction float64
	// BackoffMin is the first retry delay after a failure (default 1 s);
	// retries double up to Interval.
	BackoffMin time.Duration
	// RequestTimeout bounds the heartbeat (default 15 s); DownloadTimeout
	// bounds fetching and applying the overlay (default 5 min). Each is per
	// server tried.
	RequestTimeout, DownloadTimeout time.Duration

	HTTPClient *http.Client // default NewHTTPClient(ClientOptions{})
	// StateDir keeps the applied ETag across agent restarts
	// (runtime.etag); empty: memory only.
	StateDir string
	ProcDir  string // default /proc (uptime, boot_id)
	Apply    apply.Options
	Logger   *slog.Logger
	Rand     backoff.Rand // default backoff.NewRand()
	// Notify, when set, is called with "READY=1\nSTATUS=…" after the first
	// sync attempt (sd_notify).
	Notify func(state string) error
	// Relabel, when set, is called with the paths (under Root) that an
	// applied runtime overlay wrote or created, to give them their SELinux
	// labels (package selabel).
	Relabel func(ctx context.Context, paths []string) error
	// After returns a channel that fires after d; default time.After.
	// Tests replace it to observe the delays without sleeping.
	After func(d time.Duration) <-chan time.Time
}

// Agent syncs one node. Not safe for concurrent use (one loop).
type Agent struct {
	o       Options
	cur     int // index in o.Servers of the server in use
	etag    string
	backoff backoff.Backoff
	down    bool
	downAt  time.Time
	lastErr string
}

// New checks the options and returns an Agent; it loads the persisted
// ETag when StateDir is set and the ETag was recorded for the same root.
func New(o Options) (*Agent, error) {
	if len(o.Servers) == 0 && o.Server != nil {
		o.Servers = []*url.URL{o.Server}
	}
	if len(o.Servers) == 0 || slices.Contains(o.Servers, nil) {
		return nil, errors.New("agent: no server address (config server, kernel wwserver= or --server)")
	}
	if o.MAC == "" {
		return nil, errors.New("agent: no node MAC (config [[network]] hwaddr or kernel wwid=)")
	}
	if o.Root == "" {
		return nil, errors.New("agent: no root directory")
	}
	if o.Interval <= 0 {
		o.Interval = 60 * time.Second
	}
	if o.JitterFraction == 0 {
		o.JitterFraction = 0.1
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 15 * time.Second
	}
	if o.DownloadTimeout <= 0 {
		o.DownloadTimeout = 5 * time.Minute
	}
	if o.HTTPClient == nil {
		o.HTTPClient = NewHTTPClient(ClientOptions{})
	}
	if o.ProcDir == "" {
		o.ProcDir = "/proc"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Rand == nil {
		o.Rand = backoff.NewRand()
	}
	if o.After == nil {
		o.After = time.After
	}
	a := &Agent{o: o, backoff: backoff.Backoff{Min: o.BackoffMin, Max: o.Interval, Rand: o.Rand}}
	a.etag = a.loadETag()
	return a, nil
}

// ETag is the ETag of the last applied runtime overlay.
func (a *Agent) ETag() string { return a.etag }

type etagState struct {
	Root string `json:"root"`
	ETag string `json:"etag"`
}

func (a *Agent) statePath() string { return filepath.Join(a.o.StateDir, "runtime.etag") }

func (a *Agent) loadETag() string {
	if a.o.StateDir == "" {
		return ""
	}
	data, err := os.ReadFile(a.statePath())
	if err != nil {
		return ""
	}
	var s etagState
	if json.Unmarshal(data, &s) != nil || s.Root != a.o.Root {
		return ""
	}
	return s.ETag
}

func (a *Agent) saveETag() {
	if a.o.StateDir == "" {
		return
	}
	data, _ := json.Marshal(etagState{Root: a.o.Root, ETag: a.etag})
	if err := os.MkdirAll(a.o.StateDir, 0o755); err == nil {
		tmp := a.statePath() + ".tmp"
		if err = os.WriteFile(tmp, append(data, '\n'), 0o644); err == nil {
			err = os.Rename(tmp, a.statePath())
		}
		if err == nil {
			return
		}
	}
	a.o.Logger.Debug("could not persist runtime overlay ETag", "dir", a.o.StateDir)
}

// Server is the base URL of the server in use.
func (a *Agent) Server() *url.URL { return a.o.Servers[a.cur] }

// url is route's URL for this node at the server base, with the asset key.
func (a *Agent) url(base *url.URL, route nodeapi.Route) string {
	u := base.JoinPath(route.Path(a.o.MAC))
	if a.o.AssetKey != "" {
		q := url.Values{}
		q.Set(nodeapi.AssetKeyParam, a.o.AssetKey)
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// SyncResult tells what a successful Sync did.
type SyncResult struct {
	Changed bool // a new runtime overlay was applied (HTTP 200)
	Apply   apply.Result
	ETag    string
}

// StatusError is an unexpected HTTP status from the server.
type StatusError struct {
	Op     string
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s: HTTP %d %s", e.Op, e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Sync posts a heartbeat, then fetches and applies the runtime overlay if
// it changed.
func (a *Agent) Sync(ctx context.Context) (SyncResult, error) {
	if err := a.failover(ctx, func(base *url.URL) error { return a.heartbeat(ctx, base) }); err != nil {
		return SyncResult{}, err
	}
	var res SyncResult
	err := a.failover(ctx, func(base *url.URL) error {
		var err error
		res, err = a.fetch(ctx, base)
		return err
	})
	return res, err
}

// failover runs op against the server in use and, while it fails for the
// server's sake, against each other server in turn (at most once each);
// the server that answered is used from then on.
func (a *Agent) failover(ctx context.Context, op func(base *url.URL) error) error {
	var err error
	for i := range a.o.Servers {
		n := (a.cur + i) % len(a.o.Servers)
		err = op(a.o.Servers[n])
		if err == nil || !serverFault(err) || ctx.Err() != nil {
			if err == nil && n != a.cur {
				a.o.Logger.Warn("switched to another server", "from", a.Server().String(), "to", a.o.Servers[n].String())
				a.cur = n
			}
			return err
		}
		if len(a.o.Servers) > 1 {
			a.o.Logger.Debug("server failed, trying the next", "server", a.o.Servers[n].String(), "err", err.Error())
		}
	}
	return err
}

// serverFault reports whether err is the server's failure (unreachable,
// timed out, 5xx), which another server may not have, rather than an
// answer about this node (4xx) or a local failure (applying the overlay).
func serverFault(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status >= 500
	}
	var le *localError
	return !errors.As(err, &le)
}

// localError is a failure on the node, not at the server.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

func (a *Agent) heartbeat(ctx context.Context, base *url.URL) error {
	ctx, cancel := context.WithTimeout(ctx, a.o.RequestTimeout)
	defer cancel()
	body, _ := json.Marshal(nodeapi.HeartbeatMessage{
		Node: a.o.Node,
		AgentState: nodeapi.AgentState{
			Version:       a.o.Version,
			UptimeSeconds: a.uptime(),
			BootID:        a.bootID(),
			RuntimeETag:   a.etag,
		},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url(base, nodeapi.Heartbeat), bytes.NewReader(body))
	if err != nil {
		return &localError{fmt.Errorf("heartbeat: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "wwclient/"+a.o.Version)
	resp, err := a.o.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return &StatusError{Op: "heartbeat", Status: resp.StatusCode, Body: firstLine(resp.Body)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}

func (a *Agent) fetch(ctx context.Context, base *url.URL) (SyncResult, error) {
	ctx, cancel := context.WithTimeout(ctx, a.o.DownloadTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url(base, nodeapi.RuntimeOverlay), nil)
	if err != nil {
		return SyncResult{}, &localError{fmt.Errorf("runtime overlay: %w", err)}
	}
	if a.etag != "" {
		req.Header.Set("If-None-Match", a.etag)
	}
	req.Header.Set("User-Agent", "wwclient/"+a.o.Version)
	resp, err := a.o.HTTPClient.Do(req)
	if err != nil {
		return SyncResult{}, fmt.Errorf("runtime overlay: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return SyncResult{ETag: a.etag}, nil
	case http.StatusOK:
	default:
		return SyncResult{}, &StatusError{Op: "runtime overlay", Status: resp.StatusCode, Body: firstLine(resp.Body)}
	}
	opts := a.o.Apply
	var written []string
	if a.o.Relabel != nil {
		progress := opts.Progress
		opts.Progress = func(name string, act apply.Action) {
			if act == apply.Written || act == apply.Dir || act == apply.Symlink {
				written = append(written, filepath.Join(a.o.Root, name))
			}
			if progress != nil {
				progress(name, act)
			}
		}
	}
	res, err := apply.Apply(a.o.Root, resp.Body, opts)
	if len(written) > 0 {
		// also after a failed apply: what it wrote stays
		if rerr := a.o.Relabel(ctx, written); rerr != nil {
			a.o.Logger.Error("SELinux labels of the runtime overlay", "err", rerr)
		}
	}
	if err != nil {
		// A broken download fails over like a refused connection; a
		// full disk does not.
		err = fmt.Errorf("apply runtime overlay to %s: %w", a.o.Root, err)
		if ctx.Err() == nil && !isNetError(err) {
			err = &localError{err}
		}
		return SyncResult{Apply: res}, err
	}
	a.etag = resp.Header.Get("ETag")
	a.saveETag()
	a.o.Logger.Info("applied runtime overlay", "etag", a.etag, "written", res.Written, "unchanged", res.Unchanged,
		"symlinks", res.Symlinks, "dirs", res.Dirs, "root", a.o.Root)
	return SyncResult{Changed: true, Apply: res, ETag: a.etag}, nil
}

// isNetError reports whether err came from the connection (a download
// cut short by the server's death).
func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

func firstLine(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 512))
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(s)
}

func (a *Agent) uptime() int64 {
	data, err := os.ReadFile(filepath.Join(a.o.ProcDir, "uptime"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return int64(v)
}

func (a *Agent) bootID() string {
	data, err := os.ReadFile(filepath.Join(a.o.ProcDir, "sys/kernel/random/boot_id"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// Run syncs now, then every Interval (±jitter) until ctx ends; a value on
// trigger (SIGHUP) syncs at once. Failures are retried with backoff; the
// first failure of an outage and the recovery are logged, nothing in
// between. Run returns nil when ctx is cancelled.
func (a *Agent) Run(ctx context.Context, trigger <-chan struct{}) error {
	first := true
	for {
		_, err := a.Sync(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		if err != nil {
			wait = a.backoff.Next()
			if !a.down {
				a.down, a.downAt = true, time.Now()
				a.o.Logger.Warn("server unreachable, retrying with backoff", "server", a.Server().String(), "err", err.Error(), "retry_in", wait.Round(time.Millisecond).String())
			} else {
				a.o.Logger.Debug("still unreachable", "err", err.Error(), "retry_in", wait.Round(time.Millisecond).String())
			}
			a.lastErr = err.Error()
		} else {
			if a.down {
				a.down = false
				a.o.Logger.Info("server reachable again", "server", a.Server().String(), "down_for", time.Since(a.downAt).Round(time.Second).String())
			}
			a.backoff.Reset()
			wait = backoff.Jitter(a.o.Interval, a.o.JitterFraction, a.o.Rand)
		}
		if first {
			first = false
			a.notifyReady(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-trigger:
			a.o.Logger.Info("sync requested")
		case <-a.o.After(wait):
		}
	}
}

func (a *Agent) notifyReady(syncErr error) {
	if a.o.Notify == nil {
		return
	}
	status := "STATUS=runtime overlay in sync"
	if syncErr != nil {
		status = "STATUS=server unreachable, retrying: " + strings.ReplaceAll(syncErr.Error(), "\n", " ")
	}
	if err := a.o.Notify("READY=1\n" + status); err != nil {
		a.o.Logger.Warn("sd_notify", "err", err)
	}
}
