// Command httpload is wwserver's HTTP load generator: c connections, each
// issuing one request at a time (closed loop), for at most -d (capped at
// 2 minutes) and at most -n requests, so every run stops by itself.
//
//	httpload -c 50 -d 10s -macs macs.txt 'http://127.0.0.1:9873/ipxe/{mac}'
//	httpload -c 50 -d 10s -privileged-ports -macs macs.txt 'http://127.0.0.1:9873/overlay/runtime/{mac}'
//	httpload -c 50 -n 10000 -order seq -macs macs.txt -m POST -body '{}' 'http://127.0.0.1:9873/heartbeat/{mac}'
//	httpload -ready -since $(date +%s%N) -max-wait 60s http://127.0.0.1:9873/healthz
//
// A URL may hold {mac}: each request fills in a MAC from -macs (a file, one
// per line) or -mac-range (FIRST,COUNT), in order (-order seq: with -n equal
// to the number of MACs every MAC is asked exactly once) or at random.
// Several URLs are used round robin.
//
// Reported: requests, errors (by status code, and by transport error),
// req/s, body bytes/s, latency (request start to last body byte)
// p50/p90/p99/p99.9/max from a log-linear histogram (<2% error), the load
// generator's own CPU time and, with -pid, the server's CPU time per request
// (the load generator usually shares the machine's cores with the server).
// -json prints one JSON object instead of text.
//
// Only loopback addresses are allowed unless -allow-remote is given.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/wwcluster/ww/tools/internal/procstat"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wwcluster/ww/tools/internal/hist"
)

// maxDuration bounds every run, whatever -d says.
const maxDuration = 2 * time.Minute

type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(s string) error { *h = append(*h, s); return nil }

type options struct {
	conns       int
	duration    time.Duration
	warmup      time.Duration
	maxReq      int64
	method      string
	body        string
	bodyFile    string
	headers     headerList
	macsFile    string
	macRange    string
	order       string
	privileged  bool
	portRange   string
	revalidate  bool
	timeout     time.Duration
	jsonOut     bool
	label       string
	pids        string
	allowRemote bool
	okCodes     string

	ready   bool
	since   int64
	maxWait time.Duration
}

func main() {
	var o options
	fs := flag.NewFlagSet("httpload", flag.ExitOnError)
	fs.IntVar(&o.conns, "c", 50, "connections (concurrent requests)")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration (at most 2m)")
	fs.DurationVar(&o.warmup, "warmup", 0, "run this long first without recording (counts against neither -d nor -n)")
	fs.Int64Var(&o.maxReq, "n", 0, "stop after this many requests (0: only -d)")
	fs.StringVar(&o.method, "m", http.MethodGet, "HTTP method")
	fs.StringVar(&o.body, "body", "", "request body")
	fs.StringVar(&o.bodyFile, "body-file", "", "request body from a file")
	fs.Var(&o.headers, "H", `request header "Name: value" (repeatable)`)
	fs.StringVar(&o.macsFile, "macs", "", "file of MACs (one per line) for {mac} in URLs")
	fs.StringVar(&o.macRange, "mac-range", "", "MACs for {mac}: FIRST,COUNT (e.g. 52:54:00:00:00:01,1000)")
	fs.StringVar(&o.order, "order", "random", "MAC order: seq or random")
	fs.BoolVar(&o.privileged, "privileged-ports", false, "bind local ports from -port-range (needs root; for wwserver's secure mode)")
	fs.StringVar(&o.portRange, "port-range", "600-1023", "local ports for -privileged-ports")
	fs.BoolVar(&o.revalidate, "revalidate", false, "send If-None-Match with the ETag last seen for the same URL (like wwclient)")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "per-request timeout")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as JSON")
	fs.StringVar(&o.label, "label", "", "name of this run in the output")
	fs.StringVar(&o.pids, "pid", "", "server PID(s), comma-separated: report their CPU time during the run (from /proc)")
	fs.BoolVar(&o.allowRemote, "allow-remote", false, "allow non-loopback targets")
	fs.StringVar(&o.okCodes, "ok", "200,204,206,304", "status codes that count as success")
	fs.BoolVar(&o.ready, "ready", false, "instead of load: poll the first URL until it answers 2xx; print seconds since -since")
	fs.Int64Var(&o.since, "since", 0, "with -ready: start time in unix nanoseconds (e.g. $(date +%s%N)); 0: now")
	fs.DurationVar(&o.maxWait, "max-wait", 2*time.Minute, "with -ready: give up after this long")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: httpload [flags] URL [URL...]\n\n")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() == 0 {
		fs.Usage()
		os.Exit(2)
	}
	if err := run(o, fs.Args(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "httpload:", err)
		os.Exit(1)
	}
}

func run(o options, urls []string, out io.Writer) error {
	for _, u := range urls {
		if err := checkTarget(u, o.allowRemote); err != nil {
			return err
		}
	}
	if o.ready {
		return waitReady(o, urls[0], out)
	}
	if o.conns < 1 {
		return errors.New("-c must be at least 1")
	}
	if o.duration <= 0 || o.duration > maxDuration {
		return fmt.Errorf("-d must be in (0, %s]", maxDuration)
	}
	if o.warmup < 0 || o.warmup > maxDuration {
		return fmt.Errorf("-warmup must be in [0, %s]", maxDuration)
	}
	l, err := newLoad(o, urls)
	if err != nil {
		return err
	}
	res, err := l.run()
	if err != nil {
		return err
	}
	if o.jsonOut {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	res.printText(out)
	return nil
}

// checkTarget refuses URLs that are not http:// to a loopback address.
func checkTarget(raw string, allowRemote bool) error {
	u, err := url.Parse(strings.ReplaceAll(raw, "{mac}", "02:00:00:00:00:00"))
	if err != nil {
		return fmt.Errorf("URL %q: %w", raw, err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("URL %q: only http:// is supported", raw)
	}
	if allowRemote {
		return nil
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("URL %q: target is not a loopback address (use -allow-remote if you mean it)", raw)
	}
	return nil
}

// waitReady polls u every 2 ms until it answers 2xx and prints the seconds
// since o.since.
func waitReady(o options, u string, out io.Writer) error {
	start := time.Now()
	if o.since != 0 {
		start = time.Unix(0, o.since)
	}
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}
	deadline := time.Now().Add(o.maxWait)
	attempts := 0
	for time.Now().Before(deadline) {
		attempts++
		resp, err := client.Get(strings.ReplaceAll(u, "{mac}", "02:00:00:00:00:00"))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				secs := time.Since(start).Seconds()
				if o.jsonOut {
					return json.NewEncoder(out).Encode(map[string]any{"label": o.label, "url": u, "ready_seconds": secs, "attempts": attempts})
				}
				fmt.Fprintf(out, "%.3f\n", secs)
				return nil
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s (%d attempts)", u, o.maxWait, attempts)
}

// load is one run.
type load struct {
	o       options
	urls    []string
	macs    []string
	body    []byte
	headers http.Header
	ok      map[int]bool
	client  *http.Client
	tr      *http.Transport
	ports   *portPool
	etags   sync.Map // URL → ETag, for -revalidate

	seq    atomic.Uint64 // next MAC index / URL index (seq order)
	issued atomic.Int64  // requests started while recording
}

func newLoad(o options, urls []string) (*load, error) {
	l := &load{o: o, urls: urls, headers: http.Header{}, ok: map[int]bool{}}
	for _, c := range strings.Split(o.okCodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("-ok: %w", err)
		}
		l.ok[n] = true
	}
	for _, h := range o.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return nil, fmt.Errorf("-H %q: want \"Name: value\"", h)
		}
		l.headers.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	l.body = []byte(o.body)
	if o.bodyFile != "" {
		b, err := os.ReadFile(o.bodyFile)
		if err != nil {
			return nil, err
		}
		l.body = b
	}
	var err error
	if l.macs, err = loadMACs(o.macsFile, o.macRange); err != nil {
		return nil, err
	}
	needMAC := false
	for _, u := range urls {
		needMAC = needMAC || strings.Contains(u, "{mac}")
	}
	if needMAC && len(l.macs) == 0 {
		return nil, errors.New("a URL holds {mac}: give -macs or -mac-range")
	}
	if o.order != "seq" && o.order != "random" {
		return nil, fmt.Errorf("-order %q: want seq or random", o.order)
	}

	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	l.tr = &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		MaxIdleConns:          o.conns,
		MaxIdleConnsPerHost:   o.conns,
		MaxConnsPerHost:       o.conns,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // count what the server sends, as iPXE would get it
		ResponseHeaderTimeout: o.timeout,
		ForceAttemptHTTP2:     false,
		WriteBufferSize:       16 << 10,
		ReadBufferSize:        64 << 10,
	}
	if o.privileged {
		lo, hi, err := parsePortRange(o.portRange)
		if err != nil {
			return nil, err
		}
		if hi-lo+1 < o.conns {
			return nil, fmt.Errorf("-port-range %s has fewer ports than -c %d", o.portRange, o.conns)
		}
		l.ports = newPortPool(lo, hi)
		l.tr.DialContext = l.ports.dial
	}
	l.client = &http.Client{
		Transport: l.tr,
		Timeout:   o.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return l, nil
}

// loadMACs reads the MAC list from a file or a FIRST,COUNT range.
func loadMACs(file, rng string) ([]string, error) {
	var macs []string
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			macs = append(macs, line)
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	if rng != "" {
		first, count, ok := strings.Cut(rng, ",")
		if !ok {
			return nil, fmt.Errorf("-mac-range %q: want FIRST,COUNT", rng)
		}
		hw, err := net.ParseMAC(strings.TrimSpace(first))
		if err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("-mac-range %q: bad MAC", rng)
		}
		n, err := strconv.Atoi(strings.TrimSpace(count))
		if err != nil || n < 1 || n > 1<<24 {
			return nil, fmt.Errorf("-mac-range %q: bad count", rng)
		}
		var v uint64
		for _, b := range hw {
			v = v<<8 | uint64(b)
		}
		for i := range n {
			macs = append(macs, FormatMAC(v+uint64(i)))
		}
	}
	return macs, nil
}

// FormatMAC formats the low 48 bits of v as aa:bb:cc:dd:ee:ff.
func FormatMAC(v uint64) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 0, 17)
	for i := 5; i >= 0; i-- {
		x := byte(v >> (8 * i))
		b = append(b, hex[x>>4], hex[x&15])
		if i > 0 {
			b = append(b, ':')
		}
	}
	return string(b)
}

func parsePortRange(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("port range %q: want LO-HI", s)
	}
	return lo, hi, nil
}

// nextURL picks the URL of the next request.
func (l *load) nextURL(r *rand.Rand) string {
	var i uint64
	if l.o.order == "seq" {
		i = l.seq.Add(1) - 1
	} else {
		i = r.Uint64()
	}
	u := l.urls[i%uint64(len(l.urls))]
	if len(l.macs) > 0 && strings.Contains(u, "{mac}") {
		u = strings.ReplaceAll(u, "{mac}", l.macs[(i/uint64(len(l.urls)))%uint64(len(l.macs))])
	}
	return u
}

// byteCounter counts body bytes as they arrive, so throughput is measured
// over exactly the measured time even when responses take longer than it.
type byteCounter struct {
	n atomic.Int64
	_ [56]byte // own cache line
}

func sumBytes(cs []byteCounter) int64 {
	var t int64
	for i := range cs {
		t += cs[i].n.Load()
	}
	return t
}

// worker is one connection's loop and its own counters.
type worker struct {
	h        *hist.Hist
	codes    map[int]int64
	errs     map[string]int64
	bytes    int64 // bodies of counted responses
	requests int64
	failures int64
}

func newWorker() *worker {
	return &worker{h: hist.New(), codes: map[int]int64{}, errs: map[string]int64{}}
}

func (w *worker) reset() { *w = *newWorker() }

// Result is the outcome of a run.
type Result struct {
	Label            string             `json:"label,omitempty"`
	URLs             []string           `json:"urls"`
	Connections      int                `json:"connections"`
	Seconds          float64            `json:"seconds"`
	Requests         int64              `json:"requests"`
	OK               int64              `json:"ok"`
	Errors           int64              `json:"errors"`
	Status           map[string]int64   `json:"status"`
	TransportErrors  map[string]int64   `json:"transport_errors,omitempty"`
	ReqPerSec        float64            `json:"req_per_sec"`
	BytesPerSec      float64            `json:"bytes_per_sec"`
	Bytes            int64              `json:"bytes"`              // body bytes received during the measured time, partial responses included
	BytesPerResponse float64            `json:"bytes_per_response"` // mean body of the counted responses
	LatencyMs        map[string]float64 `json:"latency_ms"`
	LoadCPUSeconds   float64            `json:"load_cpu_seconds"`
	ServerCPUSeconds *float64           `json:"server_cpu_seconds,omitempty"`
	ServerCPUPerReq  *float64           `json:"server_cpu_us_per_req,omitempty"`
	MACs             int                `json:"macs,omitempty"`
	// OtherCPUSeconds is the CPU time the rest of the machine (neither the
	// load generator nor -pid) used during the run: on a shared machine, how
	// much others got in the way. From /proc/stat.
	OtherCPUSeconds *float64 `json:"other_cpu_seconds,omitempty"`
	LoadAvg         string   `json:"loadavg,omitempty"`
}

func (l *load) run() (*Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.o.warmup+l.o.duration)
	defer cancel()

	workers := make([]*worker, l.o.conns)
	read := make([]byteCounter, l.o.conns)
	for i := range workers {
		workers[i] = newWorker()
	}
	pids, err := parsePIDs(l.o.pids)
	if err != nil {
		return nil, err
	}
	// The measured window opens before any worker starts (no warm-up) or
	// when startMeasure is closed; its counters are read at that instant, so
	// nothing a worker does before it is counted in the window.
	var (
		measureStart      time.Time
		read0             int64
		cpu0, busy0, srv0 float64
	)
	openWindow := func() {
		cpu0 = selfCPU()
		busy0 = procstat.MachineBusy(true)
		if len(pids) > 0 {
			srv0, _ = procCPU(pids)
		}
		measureStart = time.Now()
		read0 = sumBytes(read)
	}
	if l.o.warmup <= 0 {
		openWindow()
	}
	var wg sync.WaitGroup
	startMeasure := make(chan struct{})
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i)+1, uint64(time.Now().UnixNano())))
			buf := make([]byte, 256<<10)
			warm := l.o.warmup > 0
			for ctx.Err() == nil {
				if warm {
					select {
					case <-startMeasure:
						warm = false
						w.reset()
					default:
					}
				}
				if !warm && l.o.maxReq > 0 && l.issued.Add(1) > l.o.maxReq {
					// The last request is done when every worker got here.
					return
				}
				l.one(ctx, r, w, buf, &read[i].n)
			}
		}()
	}
	if l.o.warmup > 0 {
		select {
		case <-time.After(l.o.warmup):
		case <-ctx.Done():
		}
		if l.o.maxReq > 0 {
			l.issued.Store(0)
		}
		openWindow()
		close(startMeasure)
	}
	// Stop at -d or when -n is reached, whichever comes first.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		<-done
	}
	elapsed := time.Since(measureStart)
	windowBytes := sumBytes(read) - read0
	cpu1 := selfCPU()
	busy1 := procstat.MachineBusy(true)
	l.tr.CloseIdleConnections()

	res := &Result{Label: l.o.label, URLs: l.urls, Connections: l.o.conns, Seconds: elapsed.Seconds(),
		Status: map[string]int64{}, TransportErrors: map[string]int64{}, MACs: len(l.macs),
		LoadCPUSeconds: cpu1 - cpu0}
	if len(pids) > 0 {
		if srv1, err := procCPU(pids); err == nil {
			d := srv1 - srv0
			res.ServerCPUSeconds = &d
		}
	}
	if busy0 >= 0 && busy1 >= 0 {
		other := busy1 - busy0 - res.LoadCPUSeconds
		if res.ServerCPUSeconds != nil {
			other -= *res.ServerCPUSeconds
		}
		other = max(other, 0)
		res.OtherCPUSeconds = &other
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			res.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	h := hist.New()
	for _, w := range workers {
		h.Merge(w.h)
		res.Requests += w.requests
		res.Errors += w.failures
		res.BytesPerResponse += float64(w.bytes)
		for c, n := range w.codes {
			res.Status[strconv.Itoa(c)] += n
		}
		for e, n := range w.errs {
			res.TransportErrors[e] += n
		}
	}
	res.OK = res.Requests - res.Errors
	res.Bytes = windowBytes
	if res.Requests > 0 {
		res.BytesPerResponse /= float64(res.Requests)
	}
	if s := elapsed.Seconds(); s > 0 {
		res.ReqPerSec = float64(res.Requests) / s
		res.BytesPerSec = float64(res.Bytes) / s
	}
	if res.ServerCPUSeconds != nil && res.Requests > 0 {
		v := *res.ServerCPUSeconds / float64(res.Requests) * 1e6
		res.ServerCPUPerReq = &v
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res.LatencyMs = map[string]float64{
		"min": ms(h.Min()), "mean": ms(h.Mean()), "p50": ms(h.Quantile(0.50)), "p90": ms(h.Quantile(0.90)),
		"p99": ms(h.Quantile(0.99)), "p999": ms(h.Quantile(0.999)), "max": ms(h.Max()),
	}
	return res, nil
}

// one issues one request and records it in w. A request cut off by the end
// of the run is not counted.
func (l *load) one(ctx context.Context, r *rand.Rand, w *worker, buf []byte, read *atomic.Int64) {
	u := l.nextURL(r)
	var body io.Reader
	if len(l.body) > 0 {
		body = bytes.NewReader(l.body)
	}
	req, err := http.NewRequestWithContext(ctx, l.o.method, u, body)
	if err != nil {
		w.errs["request: "+err.Error()]++
		w.failures++
		w.requests++
		return
	}
	for k, v := range l.headers {
		req.Header[k] = v
	}
	if len(l.body) > 0 && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if l.o.revalidate {
		if et, ok := l.etags.Load(u); ok {
			req.Header.Set("If-None-Match", et.(string))
		}
	}
	start := time.Now()
	resp, err := l.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		w.errs[errKind(err)]++
		w.failures++
		w.requests++
		w.h.Record(time.Since(start))
		return
	}
	var n int64
	var rerr error
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		read.Add(int64(k))
		if err != nil {
			if err != io.EOF {
				rerr = err
			}
			break
		}
	}
	resp.Body.Close()
	d := time.Since(start)
	if rerr != nil && ctx.Err() != nil {
		return
	}
	w.requests++
	w.bytes += n
	w.h.Record(d)
	w.codes[resp.StatusCode]++
	switch {
	case rerr != nil:
		w.errs["body: "+errKind(rerr)]++
		w.failures++
	case resp.ContentLength >= 0 && n != resp.ContentLength:
		w.errs["short body"]++
		w.failures++
	case !l.ok[resp.StatusCode]:
		w.failures++
	}
	if l.o.revalidate {
		if et := resp.Header.Get("ETag"); et != "" {
			l.etags.Store(u, et)
		}
	}
}

// errKind shortens a transport error to something countable.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "address not available"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "unexpected EOF"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// selfCPU is this process's user+system CPU time in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func parsePIDs(s string) ([]int, error) {
	var pids []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-pid %q: want PIDs", s)
		}
		pids = append(pids, n)
	}
	return pids, nil
}

// procCPU is the processes' user+system CPU time in seconds, summed.
func procCPU(pids []int) (float64, error) {
	var sum float64
	for _, pid := range pids {
		v, err := pidCPU(pid)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// pidCPU is a process's user+system CPU time in seconds from /proc/PID/stat
// (clock ticks of 1/100 s on Linux).
func pidCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("bad /proc stat")
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad /proc stat")
	}
	return (ut + st) / 100, nil
}

func (r *Result) printText(out io.Writer) {
	if r.Label != "" {
		fmt.Fprintf(out, "== %s\n", r.Label)
	}
	fmt.Fprintf(out, "urls:        %s", strings.Join(r.URLs, " "))
	if r.MACs > 0 {
		fmt.Fprintf(out, " (%d MACs)", r.MACs)
	}
	fmt.Fprintf(out, "\nconnections: %d, %.2f s\n", r.Connections, r.Seconds)
	fmt.Fprintf(out, "requests:    %d (%d ok, %d errors)\n", r.Requests, r.OK, r.Errors)
	codes := make([]string, 0, len(r.Status))
	for c := range r.Status {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		fmt.Fprintf(out, "  status %s: %d\n", c, r.Status[c])
	}
	for e, n := range r.TransportErrors {
		fmt.Fprintf(out, "  error %q: %d\n", e, n)
	}
	fmt.Fprintf(out, "rate:        %.1f req/s, %s/s (%d bytes; %s per response)\n", r.ReqPerSec, humanBytes(r.BytesPerSec),
		r.Bytes, humanBytes(r.BytesPerResponse))
	lm := r.LatencyMs
	fmt.Fprintf(out, "latency ms:  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (mean %.3f)\n",
		lm["p50"], lm["p90"], lm["p99"], lm["p999"], lm["max"], lm["mean"])
	fmt.Fprintf(out, "cpu:         load generator %.2f s", r.LoadCPUSeconds)
	if r.ServerCPUSeconds != nil {
		fmt.Fprintf(out, ", server %.2f s", *r.ServerCPUSeconds)
		if r.ServerCPUPerReq != nil {
			fmt.Fprintf(out, " (%.1f µs/request)", *r.ServerCPUPerReq)
		}
	}
	if r.OtherCPUSeconds != nil {
		fmt.Fprintf(out, ", other processes %.2f s", *r.OtherCPUSeconds)
	}
	fmt.Fprintln(out)
}

func humanBytes(v float64) string {
	units := []string{"B", "KB", "MB", "GB", "TB"}
	i := 0
	for v >= 1000 && i < len(units)-1 {
		v /= 1000
		i++
	}
	return fmt.Sprintf("%.2f %s", v, units[i])
}
