package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/status"
	"github.com/wwcluster/ww/server/status/statustest"
)

func TestCleanName(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		ok      bool
	}{
		{"undionly.kpxe", "undionly.kpxe", true},
		{"sub/file.efi", "sub/file.efi", true},
		{"./a//b", "a/b", true},
		{"a/./b/", "a/b", true},
		{"", "", false},
		{"/etc/passwd", "etc/passwd", true}, // the TFTP root's etc/passwd, not the host's
		{"/grub/grub.cfg", "grub/grub.cfg", true},
		{"//undionly.kpxe", "undionly.kpxe", true},
		{"/", "", false},
		{"/../etc/passwd", "", false},
		{`\windows`, "", false},
		{"../etc/passwd", "", false},
		{"a/../../etc", "", false},
		{"a/../b", "", false}, // any ".." element is refused, even harmless ones
		{`a\..\b`, "", false},
		{"..", "", false},
		{".", "", false},
		{"a\x00b", "", false},
	} {
		got, err := cleanName(tc.in)
		if (err == nil) != tc.ok || got != tc.out {
			t.Errorf("cleanName(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.out, tc.ok)
		}
	}
}

const serverTOML = `
address = "10.201.0.1"
[tftp]
enabled = true
listen = "%s"
dir = "%s"
anticipate = %d
`

const nodesTOML = `
[profiles.default]
image = "debian"
[nodes.n001]
profiles = ["default"]
[nodes.n001.network.eth0]
hwaddr = "52:54:00:00:00:01"
ipaddr = "%s"
`

func writeTree(t testing.TB, root, listen, dir string, anticipate int, nodeIP string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, config.ServerFile), []byte(fmt.Sprintf(serverTOML, listen, dir, anticipate)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, config.NodesFile), []byte(fmt.Sprintf(nodesTOML, nodeIP)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func quietLog() *slog.Logger {
	if os.Getenv("WWT_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type fakeLeases map[string][2]string

func (f fakeLeases) LeaseByIP(ip string) (string, string, bool) {
	v, ok := f[ip]
	return v[0], v[1], ok
}

type env struct {
	stop  context.CancelFunc // ends Run (the cleanup waits for it)
	srv   *Server
	store *config.Store
	rec   *statustest.Recorder
	dir   string
}

// startLoopback runs a server on 127.0.0.1 (no root needed).
func startLoopback(t testing.TB, o Options, nodeIP string) *env {
	t.Helper()
	root, dir := t.TempDir(), t.TempDir()
	writeTree(t, root, "127.0.0.1:0", dir, 8, nodeIP)
	store, err := config.NewStore(root, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	rec := &statustest.Recorder{}
	o.Store, o.Status = store, rec
	if o.Log == nil {
		o.Log = quietLog()
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		// Shutdown is bounded: a transfer stuck in the handler (an open
		// that blocks, a read that never ends) must not hold Run.
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return 10s after its context ended")
		}
	})
	return &env{stop: cancel, srv: srv, store: store, rec: rec, dir: dir}
}

func (e *env) client(t testing.TB) *tftp.Client {
	t.Helper()
	c, err := tftp.NewClient(e.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	c.SetRetries(2)
	return c
}

func randomFile(t testing.TB, path string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

func TestLoopbackTransfers(t *testing.T) {
	e := startLoopback(t, Options{Leases: fakeLeases{}}, "127.0.0.1")
	want := randomFile(t, filepath.Join(e.dir, "undionly.kpxe"), 100_000)
	if err := os.Mkdir(filepath.Join(e.dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	randomFile(t, filepath.Join(e.dir, "sub", "x.efi"), 1024) // exactly two 512-byte blocks

	for _, tc := range []struct {
		name    string
		file    string
		blksize int
		tsize   bool
	}{
		{"plain", "undionly.kpxe", 0, false},
		{"blksize 1468 + tsize", "undionly.kpxe", 1468, true},
		{"blksize 8192", "undionly.kpxe", 8192, false},
		{"multiple of block size, subdir", "sub/x.efi", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.client(t)
			if tc.blksize > 0 {
				c.SetBlockSize(tc.blksize)
			}
			c.RequestTSize(tc.tsize)
			wt, err := c.Receive(tc.file, "octet")
			if err != nil {
				t.Fatalf("receive: %v", err)
			}
			expected, _ := os.ReadFile(filepath.Join(e.dir, tc.file))
			if tc.tsize {
				n, ok := wt.(tftp.IncomingTransfer).Size()
				if !ok || n != int64(len(expected)) {
					t.Errorf("tsize = %d, %v; want %d", n, ok, len(expected))
				}
			}
			var buf bytes.Buffer
			if _, err := wt.WriteTo(&buf); err != nil {
				t.Fatalf("transfer: %v", err)
			}
			if !bytes.Equal(buf.Bytes(), expected) {
				t.Fatalf("got %d bytes, differ from the %d-byte file", buf.Len(), len(expected))
			}
		})
	}
	_ = want
	// The server finishes its side just after the client has the last block.
	waitFor(t, "4 transfers counted", func() bool { return counterValue(e.srv.m.transfers) == 4 })
	ev, ok := e.rec.Find("undionly.kpxe")
	if !ok || ev.Node != "n001" || ev.MAC != "52:54:00:00:00:01" || ev.IP != "127.0.0.1" || ev.Stage != status.StageTFTP {
		t.Errorf("status event = %+v %v", ev, ok)
	}
}

func TestLoopbackRefusals(t *testing.T) {
	e := startLoopback(t, Options{Leases: fakeLeases{"127.0.0.1": {"02:00:00:00:00:09", ""}}}, "10.201.0.11")
	randomFile(t, filepath.Join(e.dir, "ok"), 10)
	secret := filepath.Join(t.TempDir(), "secret")
	randomFile(t, secret, 10)
	if err := os.Symlink(secret, filepath.Join(e.dir, "escape")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, reason string }{
		{"missing.efi", "not_found"},
		{"escape", "open_error"}, // symlink out of the directory: os.Root refuses
		{"../" + filepath.Base(filepath.Dir(secret)) + "/secret", "bad_name"},
		{secret, "not_found"}, // a leading "/" is the TFTP root: the host's file is not reached
		{".", "bad_name"},
	} {
		before := counterValue(e.srv.m.errors.WithLabelValues(tc.reason))
		wt, err := e.client(t).Receive(tc.name, "octet")
		if err == nil {
			_, err = wt.WriteTo(io.Discard)
		}
		if err == nil {
			t.Errorf("%q: served", tc.name)
			continue
		}
		if got := counterValue(e.srv.m.errors.WithLabelValues(tc.reason)); got != before+1 {
			t.Errorf("%q: %s errors %v → %v (err %v)", tc.name, tc.reason, before, got, err)
		}
	}
	// Unknown files show in the status; the client is named from the DHCP leases.
	ev, ok := e.rec.Find("NOT_FOUND:missing.efi")
	if !ok || ev.MAC != "02:00:00:00:00:09" || ev.Stage != status.StageTFTP {
		t.Errorf("NOT_FOUND event = %+v %v", ev, ok)
	}
	if _, ok := e.rec.Find("NOT_FOUND:" + strings.TrimLeft(secret, "/")); !ok {
		t.Errorf("no NOT_FOUND event for an absolute name outside the TFTP root")
	}
	// The same file named from the TFTP root is served.
	wt, err := e.client(t).Receive("/ok", "octet")
	if err != nil {
		t.Fatalf("/ok: %v", err)
	}
	if n, err := wt.WriteTo(io.Discard); err != nil || n != 10 {
		t.Errorf("/ok: %d bytes, %v", n, err)
	}
	// Writes are refused with an error packet.
	rf, err := e.client(t).Send("new", "octet")
	if err == nil {
		_, err = rf.ReadFrom(strings.NewReader("data"))
	}
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("write: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "new")); err == nil {
		t.Error("a write created a file")
	}
	waitFor(t, "write_refused counted", func() bool { return counterValue(e.srv.m.errors.WithLabelValues("write_refused")) == 1 })
}

func TestLoopbackBusy(t *testing.T) {
	e := startLoopback(t, Options{MaxTransfers: 1, QueueWait: 50 * time.Millisecond}, "10.201.0.11")
	randomFile(t, filepath.Join(e.dir, "f"), 10_000)
	// The first transfer holds the only slot: the client has the first
	// block and has not acknowledged it.
	first, err := e.client(t).Receive("f", "octet")
	if err != nil {
		t.Fatal(err)
	}
	wt, err := e.client(t).Receive("f", "octet")
	if err == nil {
		_, err = wt.WriteTo(io.Discard)
	}
	if err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("second transfer: %v", err)
	}
	if _, err := first.WriteTo(io.Discard); err != nil {
		t.Errorf("first transfer: %v", err)
	}
	if got := counterValue(e.srv.m.errors.WithLabelValues("busy")); got != 1 {
		t.Errorf("busy = %v", got)
	}
}

func TestAnticipateHotReload(t *testing.T) {
	e := startLoopback(t, Options{}, "10.201.0.11")
	data := randomFile(t, filepath.Join(e.dir, "f"), 300_000)
	// (0 in wwserver.toml means the default, 8; 1 turns the window off.)
	for _, win := range []int{1, 16, 2, 8} {
		writeTree(t, e.store.Root(), "127.0.0.1:0", e.dir, win, "10.201.0.11")
		if err := e.store.Reload(); err != nil {
			t.Fatal(err)
		}
		// The first transfer after a change applies it; the second uses it.
		for i := 0; i < 2; i++ {
			c := e.client(t)
			c.SetBlockSize(1468)
			wt, err := c.Receive("f", "octet")
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := wt.WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
				t.Fatalf("anticipate %d: %v (%d bytes)", win, err, buf.Len())
			}
		}
		if got := e.srv.anticipate.Load(); got != int64(win) {
			t.Errorf("anticipate = %d, want %d", got, win)
		}
	}
}

// TestSizeProbe does what UEFI PXE does before a download: RRQ with
// tsize=0, read the OACK, end the transfer with error 8. The OACK must
// carry the exact size and the abort is not a failed transfer.
func TestSizeProbe(t *testing.T) {
	e := startLoopback(t, Options{}, "10.201.0.11")
	randomFile(t, filepath.Join(e.dir, "snponly.efi"), 173792)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rrq := []byte("\x00\x01snponly.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00")
	if _, err := conn.WriteTo(rrq, e.srv.Addr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := conn.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if buf[1] != 6 {
		t.Fatalf("expected OACK, got opcode %d: %q", buf[1], buf[:n])
	}
	opts := strings.Split(string(buf[2:n]), "\x00")
	got := map[string]string{}
	for i := 0; i+1 < len(opts); i += 2 {
		got[opts[i]] = opts[i+1]
	}
	if got["tsize"] != "173792" || got["blksize"] != "1468" {
		t.Errorf("OACK options = %v", got)
	}
	if _, err := conn.WriteTo([]byte("\x00\x05\x00\x08size probe\x00"), from); err != nil {
		t.Fatal(err)
	}
	// A real transfer afterwards is counted; the probe is not an error.
	c := e.client(t)
	wt, err := c.Receive("snponly.efi", "octet")
	if err == nil {
		_, err = wt.WriteTo(io.Discard)
	}
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "transfer counted", func() bool { return counterValue(e.srv.m.transfers) == 1 })
	if got := counterValue(e.srv.m.errors.WithLabelValues("transfer")); got != 0 {
		t.Errorf("size probe counted as a failed transfer")
	}
}

// TestLoopbackFIFO: a FIFO (or any non-regular file) in the directory is
// refused at once with a clear error. Opening it for reading would wait
// for a writer: more requests than transfer slots used to lock everyone
// out and keep Run from returning.
func TestLoopbackFIFO(t *testing.T) {
	const slots = 4
	e := startLoopback(t, Options{MaxTransfers: slots, MaxQueued: 4 * slots, QueueWait: 10 * time.Second}, "10.201.0.11")
	data := randomFile(t, filepath.Join(e.dir, "ok.efi"), 3000)
	if err := syscall.Mkfifo(filepath.Join(e.dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(e.dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Three times as many requests as slots, all at once.
	names := []string{"sub"}
	for i := 0; i < 3*slots; i++ {
		names = append(names, "fifo")
	}
	errs := make(chan error, len(names))
	for _, name := range names {
		c := e.client(t)
		go func() {
			wt, err := c.Receive(name, "octet")
			if err == nil {
				_, err = wt.WriteTo(io.Discard)
			}
			errs <- err
		}()
	}
	for range names {
		err := <-errs
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("request for a FIFO/directory: %v; want a \"not a regular file\" error", err)
		}
	}
	if got := counterValue(e.srv.m.errors.WithLabelValues("not_regular")); got != float64(len(names)) {
		t.Errorf("not_regular errors = %v, want %d", got, len(names))
	}
	if _, ok := e.rec.Find("REFUSED:fifo"); !ok {
		t.Error("no REFUSED:fifo status event")
	}
	// Every slot is free again: a regular file is served.
	wt, err := e.client(t).Receive("ok.efi", "octet")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("regular file after the FIFO requests: %v (%d bytes)", err, buf.Len())
	}
}

// tftpError returns the message of a TFTP ERROR packet ("" if p is not one).
func tftpError(p []byte) string {
	if len(p) < 5 || p[0] != 0 || p[1] != 5 {
		return ""
	}
	return strings.TrimRight(string(p[4:]), "\x00")
}

// TestLoopbackQueueBound: while every slot is busy, at most MaxQueued
// requests wait for one; the rest are refused at once instead of each
// holding a goroutine and a socket for QueueWait.
func TestLoopbackQueueBound(t *testing.T) {
	const queued, flood = 2, 40
	var logs syncBuffer
	e := startLoopback(t, Options{MaxTransfers: 1, MaxQueued: queued, QueueWait: time.Minute,
		Log: slog.New(slog.NewTextHandler(&logs, nil))}, "10.201.0.11")
	randomFile(t, filepath.Join(e.dir, "f"), 10_000)
	// The only slot: the client has the first block and has not acknowledged it.
	first, err := e.client(t).Receive("f", "octet")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Requests for a missing file: the queued ones fail fast once they get the slot.
	start := time.Now()
	for i := 0; i < flood; i++ {
		if _, err := conn.WriteTo([]byte("\x00\x01missing\x00octet\x00"), e.srv.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	read := func(n int) map[string]int {
		got := map[string]int{}
		buf := make([]byte, 600)
		for i := 0; i < n; i++ {
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			m, _, err := conn.ReadFrom(buf)
			if err != nil {
				t.Fatalf("after %d answers %v: %v", i, got, err)
			}
			got[tftpError(buf[:m])]++
		}
		return got
	}
	if got := read(flood - queued); got["server busy, try again"] != flood-queued {
		t.Fatalf("answers while the slot is held: %v; want %d busy", got, flood-queued)
	}
	// The flood is counted in full but logged once a second.
	if got := counterValue(e.srv.m.errors.WithLabelValues("busy")); got != flood-queued {
		t.Errorf("busy errors = %v, want %d", got, flood-queued)
	}
	lines := strings.Count(logs.String(), "too many transfers")
	if max := 1 + int(time.Since(start)/time.Second); lines < 1 || lines > max {
		t.Errorf("%d busy log lines for %d refusals in %v", lines, flood-queued, time.Since(start))
	}
	// The slot frees: the queued requests are served (and find no file).
	if _, err := first.WriteTo(io.Discard); err != nil {
		t.Fatalf("first transfer: %v", err)
	}
	if got := read(queued); got["file not found"] != queued {
		t.Fatalf("answers to the queued requests: %v; want %d not found", got, queued)
	}
}

// TestLoopbackTransferTimeLimit: a client that acknowledges slowly (each
// ACK well inside the retransmission timeout) is cut off at the transfer
// time limit instead of holding its slot. Without the window it gets the
// reason as a TFTP error; with it (pin/tftp cannot send the error there)
// the server must not crash and sends nothing more.
func TestLoopbackTransferTimeLimit(t *testing.T) {
	for _, window := range []int{1, 8} {
		t.Run(fmt.Sprintf("window %d", window), func(t *testing.T) {
			const limit = 300 * time.Millisecond
			e := startLoopback(t, Options{MaxTransferTime: limit}, "10.201.0.11")
			writeTree(t, e.store.Root(), "127.0.0.1:0", e.dir, window, "10.201.0.11")
			if err := e.store.Reload(); err != nil {
				t.Fatal(err)
			}
			// A request applies the window from the next transfer on.
			if _, err := e.client(t).Receive("missing", "octet"); err == nil {
				t.Fatal("a missing file was served")
			}
			randomFile(t, filepath.Join(e.dir, "f"), 40*512)
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.WriteTo([]byte("\x00\x01f\x00octet\x00"), e.srv.Addr()); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			buf := make([]byte, 600)
			for {
				// The server's retransmission timeout is 2s: a second
				// without a packet means it has stopped sending.
				_ = conn.SetReadDeadline(time.Now().Add(time.Second))
				n, from, err := conn.ReadFrom(buf)
				if ne, ok := err.(net.Error); ok && ne.Timeout() && window > 1 {
					break
				}
				if err != nil {
					t.Fatalf("after %v: %v", time.Since(start), err)
				}
				if msg := tftpError(buf[:n]); msg != "" {
					if window > 1 || !strings.Contains(msg, "time limit") || time.Since(start) < limit {
						t.Fatalf("error %q after %v", msg, time.Since(start))
					}
					break
				}
				if n < 4+512 {
					t.Fatalf("the whole file was sent in %v despite a %v limit", time.Since(start), limit)
				}
				// The slow client: 50 ms per ACK; 40 blocks would take 2 s.
				time.Sleep(50 * time.Millisecond)
				if _, err := conn.WriteTo([]byte{0, 4, buf[2], buf[3]}, from); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "transfer failure counted", func() bool { return counterValue(e.srv.m.errors.WithLabelValues("transfer")) == 1 })
			if got := counterValue(e.srv.m.transfers); got != 0 {
				t.Errorf("%v transfers counted as complete", got)
			}
		})
	}
}

// TestShutdownMidTransfer: stopping the server while a windowed transfer
// is in flight ends that transfer and Run returns (pin/tftp used to panic
// there, taking wwserver down before it saved its state).
func TestShutdownMidTransfer(t *testing.T) {
	e := startLoopback(t, Options{}, "10.201.0.11") // window 8
	randomFile(t, filepath.Join(e.dir, "f"), 100*512)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.WriteTo([]byte("\x00\x01f\x00octet\x00"), e.srv.Addr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 600)
	var from net.Addr
	for block := 1; block <= 8; block++ { // the first window
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, addr, err := conn.ReadFrom(buf)
		if err != nil || n < 4 || buf[1] != 3 {
			t.Fatalf("block %d: %q %v", block, buf[:n], err)
		}
		from = addr
	}
	e.stop()
	// The ACKs (pin/tftp wants one per block) make the server read the
	// next window, after the shutdown began.
	for block := byte(1); block <= 8; block++ {
		if _, err := conn.WriteTo([]byte{0, 4, 0, block}, from); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the aborted transfer counted", func() bool { return counterValue(e.srv.m.errors.WithLabelValues("transfer")) == 1 })
	// (The cleanup checks that Run returns.)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
