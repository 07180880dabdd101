package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStatsReport(t *testing.T) {
	start := time.Unix(1000, 0)
	s := NewStats(start)
	for i := 0; i < 3; i++ {
		s.Started()
	}
	for i := 1; i <= 100; i++ {
		s.Done(stageKernel, time.Duration(i)*time.Millisecond, 1000, nil)
	}
	s.Done(stageKernel, time.Second, 10, &statusError{code: 503})
	s.Done(stageKernel, time.Second, 0, &statusError{code: 503})
	s.Done(stageDHCPPXE, 4*time.Millisecond, 0, nil)
	s.Done(stageDHCPPXE, 0, 0, fmt.Errorf("discover: %w", errNoAnswer))
	s.Done(stageBoot, 5*time.Second, 0, nil)
	s.Booted(start.Add(5 * time.Second))
	s.Booted(start.Add(3 * time.Second)) // earlier: does not move the last boot
	s.Failed()

	var r Report
	s.Report(&r)
	if r.Started != 3 || r.Booted != 2 || r.FailedNodes != 1 {
		t.Errorf("nodes started/booted/failed = %d/%d/%d, want 3/2/1", r.Started, r.Booted, r.FailedNodes)
	}
	if r.AllBootedSeconds != 5 {
		t.Errorf("all booted after %vs, want 5", r.AllBootedSeconds)
	}
	if r.BytesTotal != 100*1000+10 {
		t.Errorf("bytes = %d, want %d (failed steps' partial bytes count, boot stage none)", r.BytesTotal, 100*1000+10)
	}
	var order []string
	for _, st := range r.Stages {
		order = append(order, st.Stage)
	}
	if got := strings.Join(order, ","); got != "dhcp-pxe,kernel,boot" {
		t.Errorf("stage order %s, want boot order dhcp-pxe,kernel,boot", got)
	}
	k := r.Stages[1]
	if k.OK != 100 || k.Failed != 2 || k.Failures["HTTP 503"] != 2 {
		t.Errorf("kernel stage = %+v", k)
	}
	// Histogram error is < 2%.
	if k.P50ms < 49 || k.P50ms > 51.5 || k.P99ms < 98 || k.P99ms > 101 || k.Maxms < 99 || k.Maxms > 101 {
		t.Errorf("kernel p50/p99/max = %v/%v/%v ms, want ~50/99/100", k.P50ms, k.P99ms, k.Maxms)
	}
	if d := r.Stages[0]; d.Failures[errNoAnswer.Error()] != 1 {
		t.Errorf("dhcp failures = %v", d.Failures)
	}
	r.Target, r.Mode, r.Nodes = "wwserver", modeFull, 3
	table := formatTable([]Report{r})
	if !strings.Contains(table, "| wwserver full | 3 | 2 | 1 | 5.00 s |") || !strings.Contains(table, "| wwserver full | kernel | 100 | 2 | 50 ms / 99 ms / 100 ms |") {
		t.Errorf("table lacks the run row:\n%s", table)
	}
}

func TestProgressLine(t *testing.T) {
	s := NewStats(time.Unix(0, 0))
	s.Started()
	s.Done(stageTFTP, time.Millisecond, 5, nil)
	s.Done(stageScript, time.Millisecond, 0, errShort)
	got := s.Progress(time.Unix(2, 0)).String()
	for _, want := range []string{"2.0s", "started 1, booted 0, failed 0", "tftp 1", "script 0", "errors 1"} {
		if !strings.Contains(got, want) {
			t.Errorf("progress %q lacks %q", got, want)
		}
	}
}

func TestReason(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{&statusError{code: 404}, "HTTP 404"},
		{fmt.Errorf("x: %w", errShort), "short body"},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "connection refused"},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), "connection reset"},
		{fmt.Errorf("bind: %w", syscall.EADDRINUSE), "no source address/port"},
		{context.DeadlineExceeded, "timeout"},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, "timeout (connect)"},
		{fmt.Errorf("net/http: timeout awaiting response headers: %w", os.ErrDeadlineExceeded), "timeout (response header)"},
		{fmt.Errorf("discover: %w", errNoAnswer), errNoAnswer.Error()},
		{errNoKernel, errNoKernel.Error()},
		{errors.New(strings.Repeat("z", 200)), strings.Repeat("z", 80)},
		{errors.New("tftp undionly.kpxe: code: 1, message: server busy, try again\x00"), "TFTP error: server busy, try again"},
		{errors.New("code: 1, message: read udp 10.100.0.1:11234: i/o timeout"), "timeout"},
		{errors.New("dial tcp 10.100.0.1:9873: something odd"), "dial tcp ADDR: something odd"},
	}
	for _, c := range cases {
		if got := reason(c.err); got != c.want {
			t.Errorf("reason(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

func TestParseModes(t *testing.T) {
	if _, err := parseModes("full,nginx", false); err == nil {
		t.Error("nginx without -nginx accepted")
	}
	if _, err := parseModes("nginx,full", true); err == nil {
		t.Error("a wwserver run after nginx accepted")
	}
	if _, err := parseModes("full,bogus", true); err == nil {
		t.Error("unknown mode accepted")
	}
	runs, err := parseModes("full, http ,nginx", true)
	if err != nil || len(runs) != 3 || runs[0].mode != modeFull || runs[2].target != "nginx" {
		t.Fatalf("runs %+v, %v", runs, err)
	}
}

func TestClientConfigBounds(t *testing.T) {
	ok := clientConfig{Mode: modeFull, Nodes: []nodeSpec{{MAC: "52:54:00:00:00:01"}}, Arrival: "all", Timeout: time.Minute,
		TFTPBlockSize: 1432, DHCPTimeout: time.Second, DHCPTries: 1, RequestTimeout: time.Second, DownloadTimeout: time.Second,
		TFTPTimeout: time.Second}
	if err := ok.check(); err != nil {
		t.Fatal(err)
	}
	bad := []func(c *clientConfig){
		func(c *clientConfig) { c.Mode = "x" },
		func(c *clientConfig) { c.Nodes = nil },
		func(c *clientConfig) { c.Nodes = make([]nodeSpec, maxNodes+1) },
		func(c *clientConfig) { c.Timeout = 0 },
		func(c *clientConfig) { c.Timeout = 3 * time.Hour },
		func(c *clientConfig) { c.PollFor = 2 * time.Minute },
		func(c *clientConfig) { c.PollFor, c.PollInterval = time.Second, time.Millisecond },
		func(c *clientConfig) { c.Arrival = "later" },
		func(c *clientConfig) { c.TFTPBlockSize = 70000 },
	}
	for i, f := range bad {
		c := ok
		f(&c)
		if err := c.check(); err == nil {
			t.Errorf("bad config %d accepted", i)
		}
	}
}
