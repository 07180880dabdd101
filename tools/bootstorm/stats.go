package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wwcluster/ww/tools/internal/hist"
)

// Stages in boot order. A node's boot is the PXE firmware's DHCP and TFTP,
// iPXE's DHCP and downloads, then wwclient's first heartbeat and runtime
// overlay; after "booted" wwclient keeps polling.
const (
	stageDHCPPXE     = "dhcp-pxe"     // firmware DORA (option 93, PXEClient)
	stageTFTP        = "tftp"         // the iPXE binary
	stageDHCPIPXE    = "dhcp-ipxe"    // iPXE's DORA (user class iPXE)
	stageScript      = "script"       // GET the per-node iPXE script
	stageKernel      = "kernel"       // downloads the script names, by URL path
	stageImage       = "image"        //
	stageSystem      = "system"       //
	stageRuntimeBoot = "runtime-ipxe" // runtime overlay fetched by iPXE (insecure mode)
	stageModules     = "modules"      // two-stage: the kernel's network drivers (/modules/)
	stageFile        = "file"         // any other download
	stageIndex       = "index"        // two-stage: wwclient GET /index/ (the chunked image's index)
	stageProgress    = "progress"     // two-stage: wwclient POST /progress/
	stageRaw         = "raw"          // raw mode: one big static file, the veth's rate
	stageHeartbeat   = "heartbeat"    // wwclient POST /heartbeat
	stageRuntime     = "runtime"      // wwclient GET /overlay/runtime (200 or 304)
	stageBoot        = "boot"         // whole boot: first packet to first runtime overlay
)

var stageOrder = []string{stageDHCPPXE, stageTFTP, stageDHCPIPXE, stageScript, stageKernel, stageModules,
	stageSystem, stageRuntimeBoot, stageFile, stageIndex, stageImage, stageProgress, stageRaw, stageHeartbeat,
	stageRuntime, stageBoot}

// stageStats is one stage's account; its histogram is not safe for
// concurrent use, so Stats locks around it.
type stageStats struct {
	lat      *hist.Hist
	ok, fail int
	bytes    int64
	reasons  map[string]int
}

// Stats accounts every node's stages. Safe for concurrent use.
type Stats struct {
	mu       sync.Mutex
	start    time.Time
	stages   map[string]*stageStats
	booted   int
	lastBoot time.Duration // since start, of the last node to boot
	failed   int           // nodes that did not boot
	started  int           // nodes that started booting
}

// NewStats starts the clock.
func NewStats(start time.Time) *Stats {
	return &Stats{start: start, stages: map[string]*stageStats{}}
}

func (s *Stats) stage(name string) *stageStats {
	st := s.stages[name]
	if st == nil {
		st = &stageStats{lat: hist.New(), reasons: map[string]int{}}
		s.stages[name] = st
	}
	return st
}

// Done records a finished step of a stage: its latency, the bytes it
// received and its error (nil for success).
func (s *Stats) Done(stage string, d time.Duration, bytes int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stage(stage)
	st.bytes += bytes
	if err != nil {
		st.fail++
		st.reasons[reason(err)]++
		return
	}
	st.ok++
	st.lat.Record(d)
}

// Started counts a node that began booting.
func (s *Stats) Started() {
	s.mu.Lock()
	s.started++
	s.mu.Unlock()
}

// Booted counts a node that reached "booted" at time at.
func (s *Stats) Booted(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.booted++
	if d := at.Sub(s.start); d > s.lastBoot {
		s.lastBoot = d
	}
}

// Failed counts a node that gave up.
func (s *Stats) Failed() {
	s.mu.Lock()
	s.failed++
	s.mu.Unlock()
}

// Progress is a snapshot for the terminal: nodes started, booted, failed
// and successes per stage.
type Progress struct {
	Elapsed                 time.Duration
	Started, Booted, Failed int
	OK                      map[string]int
	Fail                    int
}

// Progress returns a snapshot.
func (s *Stats) Progress(now time.Time) Progress {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := Progress{Elapsed: now.Sub(s.start), Started: s.started, Booted: s.booted, Failed: s.failed, OK: map[string]int{}}
	for name, st := range s.stages {
		p.OK[name] = st.ok
		p.Fail += st.fail
	}
	return p
}

// String is one progress line.
func (p Progress) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%5.1fs started %d, booted %d, failed %d |", p.Elapsed.Seconds(), p.Started, p.Booted, p.Failed)
	for _, name := range stageOrder {
		if n, ok := p.OK[name]; ok && name != stageBoot {
			fmt.Fprintf(&b, " %s %d", name, n)
		}
	}
	fmt.Fprintf(&b, " | errors %d", p.Fail)
	return b.String()
}

// StageReport is one stage in the JSON report. Latencies are of successful
// steps, in milliseconds.
type StageReport struct {
	Stage    string         `json:"stage"`
	OK       int            `json:"ok"`
	Failed   int            `json:"failed"`
	P50ms    float64        `json:"p50_ms"`
	P99ms    float64        `json:"p99_ms"`
	Maxms    float64        `json:"max_ms"`
	Bytes    int64          `json:"bytes"`
	Failures map[string]int `json:"failures,omitempty"`
}

// Report fills the node and stage fields of r.
func (s *Stats) Report(r *Report) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.Started, r.Booted, r.FailedNodes = s.started, s.booted, s.failed
	r.AllBootedSeconds = s.lastBoot.Seconds()
	r.Stages = nil
	r.BytesTotal = 0
	names := make([]string, 0, len(s.stages))
	for name := range s.stages {
		names = append(names, name)
	}
	rank := map[string]int{}
	for i, n := range stageOrder {
		rank[n] = i + 1
	}
	sort.Slice(names, func(i, j int) bool {
		ri, rj := rank[names[i]], rank[names[j]]
		if ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	for _, name := range names {
		st := s.stages[name]
		sr := StageReport{Stage: name, OK: st.ok, Failed: st.fail, Bytes: st.bytes}
		if st.ok > 0 {
			sr.P50ms, sr.P99ms, sr.Maxms = ms(st.lat.Quantile(0.5)), ms(st.lat.Quantile(0.99)), ms(st.lat.Max())
		}
		if len(st.reasons) > 0 {
			sr.Failures = map[string]int{}
			for k, v := range st.reasons {
				sr.Failures[k] = v
			}
		}
		if name != stageBoot {
			r.BytesTotal += st.bytes
		}
		r.Stages = append(r.Stages, sr)
	}
}

// statusError is an HTTP answer other than the one expected.
type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d", e.code) }

// errShort is a body shorter than its Content-Length.
var errShort = errors.New("short body")

// reason shortens an error to a countable failure reason.
func reason(err error) string {
	var se *statusError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return se.Error()
	case errors.Is(err, errNoKernel):
		return errNoKernel.Error()
	case errors.Is(err, errShort), errors.Is(err, io.ErrUnexpectedEOF):
		return "short body"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EADDRINUSE), errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no source address/port"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout" + timeoutKind(err)
	case errors.Is(err, errNoAnswer):
		return errNoAnswer.Error()
	case errors.Is(err, io.EOF):
		return "connection closed"
	}
	s := strings.TrimRight(err.Error(), "\x00") // TFTP messages end in NUL
	// pin/tftp's errors carry the server's message after "message: ";
	// addresses and ports would make every failure its own reason.
	if i := strings.LastIndex(s, "message: "); i >= 0 {
		s = "TFTP error: " + s[i+len("message: "):]
	}
	if strings.Contains(s, "i/o timeout") {
		return "timeout"
	}
	s = addrPort.ReplaceAllString(s, "ADDR")
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// timeoutKind says which wait timed out, when the error tells: connecting,
// waiting for the response header, or a body that stopped arriving.
func timeoutKind(err error) string {
	var op *net.OpError
	msg := err.Error()
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return " (connect)"
	case strings.Contains(msg, "awaiting response headers"):
		return " (response header)"
	case strings.Contains(msg, "nothing received for"):
		return " (idle body)"
	}
	return ""
}

// addrPort matches IPv4 address:port in error messages.
var addrPort = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+(:\d+)?`)
