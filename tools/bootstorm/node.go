package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/wwclient/agent"
)

// simNode is one simulated node: its NIC's MAC and, when known before DHCP
// (HTTP-only mode), its address.
type simNode struct {
	MAC net.HardwareAddr
	IP  net.IP
}

// runner plays the nodes of one storm.
type runner struct {
	cfg   clientConfig
	stats *Stats
	dhcp  *dhcpPort          // full mode only
	addrs func(net.IP) error // adds a node's address to the client interface (nil: don't)
}

// boot plays one node from power-on to booted, then polls as wwclient until
// pollEnd. It reports every step to r.stats and never returns an error: a
// failed step ends the node's boot and is counted.
func (r *runner) boot(ctx context.Context, n simNode) {
	r.stats.Started()
	if r.cfg.Mode == modeRaw {
		r.rawBoot(ctx, n)
		return
	}
	t0 := time.Now()
	src, base, err := r.loadImage(ctx, n)
	if err != nil {
		var se *stepError
		if errors.As(err, &se) {
			r.stats.Done(se.stage, se.d, 0, se.err)
			err = fmt.Errorf("%s: %s", se.stage, reason(se.err))
		}
		r.stats.Done(stageBoot, time.Since(t0), 0, err)
		r.stats.Failed()
		return
	}
	r.wwclient(ctx, n, src, base, t0)
}

// stepError is a failed step of the boot: its stage and how long it took.
type stepError struct {
	stage string
	d     time.Duration
	err   error
}

func (e *stepError) Error() string { return e.stage + ": " + reason(e.err) }
func (e *stepError) Unwrap() error { return e.err }

// loadImage plays the boot up to a running image: the firmware (full mode),
// iPXE and, for a two-stage boot, wwclient's second stage. It returns the
// node's address and the server's base URL.
func (r *runner) loadImage(ctx context.Context, n simNode) (net.IP, string, error) {
	src := n.IP
	scriptURL := nodeapi.IPXE.URL(r.cfg.Base, n.MAC.String())
	if r.cfg.Mode == modeFull {
		var err error
		if scriptURL, src, err = r.firmware(ctx, n); err != nil {
			return nil, "", err
		}
	}
	if src != nil && r.addrs != nil {
		if err := r.addrs(src); err != nil {
			return nil, "", &stepError{stageScript, 0, fmt.Errorf("add address %s: %w", src, err)}
		}
	}
	if _, err := url.Parse(scriptURL); err != nil || scriptURL == "" {
		return nil, "", &stepError{stageScript, 0, fmt.Errorf("bad script URL %q", scriptURL)}
	}
	digest, err := r.ipxe(ctx, src, scriptURL)
	if err != nil {
		return nil, "", err
	}
	base, err := baseURL(scriptURL)
	if err != nil {
		return nil, "", &stepError{stageScript, 0, err}
	}
	// Two-stage: wwclient as /init fetches the chunked image.
	if digest != "" {
		if err := r.stage2Boot(ctx, n.MAC.String(), src, base, digest); err != nil {
			return nil, "", err
		}
	}
	return src, base, nil
}

// firmware plays PXE firmware (DORA, the iPXE binary over TFTP) and iPXE's
// own DORA; it returns the script URL and the node's address.
func (r *runner) firmware(ctx context.Context, n simNode) (string, net.IP, error) {
	t := time.Now()
	l, err := r.dhcp.dora(ctx, dhcpClient{MAC: n.MAC, Timeout: r.cfg.DHCPTimeout, Tries: r.cfg.DHCPTries})
	if err != nil {
		return "", nil, &stepError{stageDHCPPXE, time.Since(t), err}
	}
	r.stats.Done(stageDHCPPXE, time.Since(t), 0, nil)
	if l.BootFile == "" {
		return "", nil, &stepError{stageDHCPPXE, 0, fmt.Errorf("no boot file offered")}
	}
	tftpServer := l.NextServer
	if tftpServer == nil || tftpServer.IsUnspecified() {
		tftpServer = l.Server
	}
	t = time.Now()
	size, err := r.tftpGet(ctx, tftpServer, l.BootFile)
	if err != nil {
		return "", nil, &stepError{stageTFTP, time.Since(t), err}
	}
	r.stats.Done(stageTFTP, time.Since(t), size, nil)
	// iPXE: its own DORA, whose boot file is the script URL.
	t = time.Now()
	l, err = r.dhcp.dora(ctx, dhcpClient{MAC: n.MAC, IPXE: true, Timeout: r.cfg.DHCPTimeout, Tries: r.cfg.DHCPTries})
	if err != nil {
		return "", nil, &stepError{stageDHCPIPXE, time.Since(t), err}
	}
	r.stats.Done(stageDHCPIPXE, time.Since(t), 0, nil)
	return l.BootFile, l.IP, nil
}

// ipxe fetches the script, then every download it names, and returns the
// image digest of a two-stage boot ("" for single-stage).
func (r *runner) ipxe(ctx context.Context, src net.IP, scriptURL string) (string, error) {
	c := newHTTPClient(src, false, r.cfg.RequestTimeout)
	defer c.CloseIdleConnections()
	t := time.Now()
	var script bytes.Buffer
	n64, _, err := httpGet(ctx, c, scriptURL, nil, &limitedWriter{w: &script, n: maxScript}, r.cfg.DownloadTimeout)
	if err != nil {
		return "", &stepError{stageScript, time.Since(t), err}
	}
	r.stats.Done(stageScript, time.Since(t), n64, nil)
	downloads, err := parseScript(script.Bytes())
	if err != nil {
		return "", &stepError{stageScript, 0, err}
	}
	digest := ""
	for _, d := range downloads {
		if d.ImageDigest != "" {
			digest = d.ImageDigest
		}
		if d.Stage == stageFile && d.Command == "chain" {
			return "", &stepError{stageScript, 0, fmt.Errorf("script chains to %s: not followed", d.URL)}
		}
		var hdr http.Header
		if d.Stage == stageImage && r.cfg.ImageBytes > 0 {
			hdr = http.Header{"Range": {"bytes=0-" + strconv.FormatInt(r.cfg.ImageBytes-1, 10)}}
		}
		t := time.Now()
		n, _, err := httpGet(ctx, c, d.URL, hdr, io.Discard, r.cfg.DownloadTimeout)
		if err != nil {
			return "", &stepError{d.Stage, time.Since(t), err}
		}
		r.stats.Done(d.Stage, time.Since(t), n, nil)
	}
	return digest, nil
}

// wwclient plays the booted node's agent: the first heartbeat and runtime
// overlay (then the node is booted), then the same every interval until
// the poll time is over.
func (r *runner) wwclient(ctx context.Context, n simNode, src net.IP, base string, t0 time.Time) {
	ww := newHTTPClient(src, r.cfg.Secure, r.cfg.RequestTimeout)
	defer ww.CloseIdleConnections()
	bootID := fmt.Sprintf("bootstorm-%x", t0.UnixNano())
	etag := ""
	sync := func() (string, error) {
		t := time.Now()
		body, _ := json.Marshal(nodeapi.HeartbeatMessage{AgentState: nodeapi.AgentState{Version: "bootstorm",
			UptimeSeconds: int64(time.Since(t0).Seconds()), BootID: bootID, RuntimeETag: etag}})
		if err := httpPost(ctx, ww, nodeapi.Heartbeat.URL(base, n.MAC.String()), body, r.cfg.RequestTimeout); err != nil {
			r.stats.Done(stageHeartbeat, time.Since(t), 0, err)
			return stageHeartbeat, err
		}
		r.stats.Done(stageHeartbeat, time.Since(t), 0, nil)
		t = time.Now()
		var hdr http.Header
		if etag != "" {
			hdr = http.Header{"If-None-Match": {etag}}
		}
		n, tag, err := httpGet(ctx, ww, nodeapi.RuntimeOverlay.URL(base, n.MAC.String()), hdr, io.Discard, r.cfg.DownloadTimeout)
		r.stats.Done(stageRuntime, time.Since(t), n, err)
		if err != nil {
			return stageRuntime, err
		}
		if tag != "" {
			etag = tag
		}
		return "", nil
	}
	if stage, err := sync(); err != nil {
		r.stats.Done(stageBoot, time.Since(t0), 0, fmt.Errorf("%s: %s", stage, reason(err)))
		r.stats.Failed()
		return
	}
	now := time.Now()
	r.stats.Done(stageBoot, now.Sub(t0), 0, nil)
	r.stats.Booted(now)

	// wwclient's steady state: every interval until the poll time is over.
	if r.cfg.PollInterval <= 0 || r.cfg.PollFor <= 0 {
		return
	}
	end := time.NewTimer(r.cfg.PollFor)
	defer end.Stop()
	tick := time.NewTicker(r.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			return
		case <-tick.C:
			_, _ = sync() // counted per stage; a failed poll is retried next interval, as wwclient does
		}
	}
}

// tftpGet reads file from server as PXE firmware does (lockstep, blksize as
// configured, tsize asked) and returns its size.
func (r *runner) tftpGet(ctx context.Context, server net.IP, file string) (int64, error) {
	c, err := tftp.NewClient(net.JoinHostPort(server.String(), "69"))
	if err != nil {
		return 0, err
	}
	c.SetBlockSize(r.cfg.TFTPBlockSize)
	c.SetTimeout(r.cfg.TFTPTimeout)
	c.SetRetries(r.cfg.TFTPRetries)
	c.RequestTSize(true)
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		wt, err := c.Receive(file, "octet")
		if err != nil {
			done <- result{0, fmt.Errorf("tftp %s: %w", file, err)}
			return
		}
		n, err := wt.WriteTo(io.Discard)
		if err == nil {
			if ts, ok := wt.(interface{ Size() (int64, bool) }); ok {
				if want, known := ts.Size(); known && want != n {
					err = fmt.Errorf("tftp %s: %w: %d of %d bytes", file, errShort, n, want)
				}
			}
		}
		done <- result{n, err}
	}()
	// The transfer itself is bounded by timeout × retries per block; ctx
	// only stops waiting for it.
	select {
	case res := <-done:
		return res.n, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// newHTTPClient is one node's HTTP client: from its own address when known,
// and in secure mode from a privileged source port, as wwclient does.
func newHTTPClient(src net.IP, privileged bool, timeout time.Duration) *http.Client {
	return newHTTPClientConns(src, privileged, timeout, 1)
}

// newHTTPClientConns is newHTTPClient keeping up to idle connections alive
// (wwclient's chunk fetch keeps one per worker).
func newHTTPClientConns(src net.IP, privileged bool, timeout time.Duration, idle int) *http.Client {
	d := net.Dialer{Timeout: 10 * time.Second}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	dial := d.DialContext
	if privileged {
		dial = agent.PrivilegedDialer(d, 600, 1023)
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy: nil, DialContext: dial, DisableCompression: true,
			MaxIdleConnsPerHost: idle, IdleConnTimeout: 5 * time.Second, ResponseHeaderTimeout: timeout,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// httpGet fetches u into w and returns the body's size and ETag. 200, 206
// and 304 are successes; a body shorter than its Content-Length is not.
func httpGet(ctx context.Context, c *http.Client, u string, hdr http.Header, w io.Writer, timeout time.Duration) (int64, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "bootstorm")
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusPartialContent, http.StatusNotModified:
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return 0, "", &statusError{code: resp.StatusCode}
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, "", err
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, "", fmt.Errorf("%w: %d of %d bytes", errShort, n, resp.ContentLength)
	}
	return n, resp.Header.Get("ETag"), nil
}

// httpPost posts a JSON body and wants a 2xx answer.
func httpPost(ctx context.Context, c *http.Client, u string, body []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "bootstorm")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return &statusError{code: resp.StatusCode}
	}
	return nil
}

// baseURL is scheme://host of u.
func baseURL(u string) (string, error) {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "", fmt.Errorf("bad URL %q", u)
	}
	return p.Scheme + "://" + p.Host, nil
}

// limitedWriter fails once more than n bytes are written.
type limitedWriter struct {
	w io.Writer
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, fmt.Errorf("response larger than %d bytes", maxScript)
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}
