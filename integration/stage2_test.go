package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/wwclient/agent"
	"github.com/wwcluster/ww/wwclient/stage2"
)

// The second stage against real wwserver processes on loopback (no QEMU):
// wwclient's stage2 package (the code /init runs) fetches a real built
// image through faults made on the server side, unpacks it, and the tree
// must equal the image. Needs WW_BIN and WW_IMAGE as the QEMU cases.

const realMAC = "52:54:00:77:00:01"

// realServer is one `wwserver serve` process on 127.0.0.1.
type realServer struct {
	bin    string // wwserver
	tree   string
	listen string
	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	log    string
}

// realTree writes a served tree with `wwserver init` from image (a rootfs
// directory) and one node, realMAC, booting two-stage (the default).
func realTree(t *testing.T, image string) string {
	t.Helper()
	p := paths(t, true)
	dir := filepath.Join(t.TempDir(), "tree")
	out, err := exec.Command(p.Wwserver, "init", dir, "--wwclient", p.Wwclient, "--image-from", image,
		"--address", "127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("wwserver init: %v\n%s", err, out)
	}
	nodes := fmt.Sprintf("[profiles.default]\nimage = \"default\"\nsystem_overlays = [\"wwinit\"]\nruntime_overlays = [\"generic\"]\n"+
		"[nodes.r001]\nprofiles = [\"default\"]\n[nodes.r001.network.eth0]\nhwaddr = %q\n", realMAC)
	if err := os.WriteFile(filepath.Join(dir, "nodes.toml"), []byte(nodes), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// freeAddr is a free 127.0.0.1 port (closed again: wwserver binds it).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startReal starts wwserver on listen and waits until /healthz answers.
// The test's cleanup kills it by PID.
func startReal(t *testing.T, ctx context.Context, tree, listen string) *realServer {
	t.Helper()
	s := &realServer{bin: paths(t, true).Wwserver, tree: tree, listen: listen, log: filepath.Join(filepath.Dir(tree), "wwserver-"+strings.ReplaceAll(listen, ":", "_")+".log")}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("---- %s log (tail) ----\n%s", listen, tailFile(s.log, 30))
		}
	})
	c := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, ctx, time.Minute, "wwserver on "+listen+" healthy", func() bool {
		resp, err := c.Get(s.url() + nodeapi.Healthz)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return s
}

func (s *realServer) start() error {
	f, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(s.bin, "serve", "--root", s.tree, "--listen", s.listen)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return nil
}

// kill sends SIGKILL (a crash, no shutdown) and waits for the exit.
func (s *realServer) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (s *realServer) url() string { return "http://" + s.listen }

func tailFile(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// imageDigest asks the server for the node's iPXE script (which builds the
// chunked image) and returns its wwimage=.
func imageDigest(t *testing.T, ctx context.Context, base string) string {
	t.Helper()
	body, err := getLong(ctx, base+"/ipxe/"+realMAC)
	if err != nil {
		t.Fatalf("iPXE script: %v", err)
	}
	m := regexp.MustCompile(`wwimage=([0-9a-f]{64})`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the script has no wwimage=:\n%s", body)
	}
	return m[1]
}

// getLong is a GET bounded by ctx only (a script request waits for the
// image build).
func getLong(ctx context.Context, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	return string(body), err
}

// cutProxy forwards 127.0.0.1 connections to a server and acts on what
// the server sends: cut closes a connection (both sides) once it carried
// that many response bytes, for the first cuts connections that get so
// far; onBytes sees the running total of response bytes.
type cutProxy struct {
	ln      net.Listener
	target  string
	cutAt   int64
	cuts    atomic.Int32 // cuts left
	cut     atomic.Int32 // connections cut
	total   atomic.Int64
	onBytes func(total int64)
	wg      sync.WaitGroup
	mu      sync.Mutex
	ranges  []string // Range headers seen
	conns   map[net.Conn]bool
}

func newCutProxy(t *testing.T, target string, cutAt int64, cuts int32) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, cutAt: cutAt, conns: map[net.Conn]bool{}}
	p.cuts.Store(cuts)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) url() *url.URL { return &url.URL{Scheme: "http", Host: p.ln.Addr().String()} }

func (p *cutProxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = true
	}
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := p.dial(c.RemoteAddr().(*net.TCPAddr).Port < 1024)
		if err != nil {
			c.Close()
			continue
		}
		p.track(c, s)
		p.wg.Add(2)
		go p.requests(c, s)
		go p.responses(s, c)
	}
}

// dial connects to the target, from a privileged port when the client
// used one (secure mode's check of progress posts sees the proxy's port).
func (p *cutProxy) dial(privileged bool) (net.Conn, error) {
	if !privileged {
		return net.DialTimeout("tcp", p.target, 5*time.Second)
	}
	var err error
	for port := 1023; port >= 600; port-- {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}
		var c net.Conn
		if c, err = d.Dial("tcp", p.target); err == nil {
			return c, nil
		}
	}
	return nil, err
}

var rangeHeader = regexp.MustCompile(`(?i)\r\nRange: (bytes=\d+-)\r\n`)

// requests copies client → server, noting Range headers.
func (p *cutProxy) requests(c, s net.Conn) {
	defer p.wg.Done()
	defer s.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if m := rangeHeader.FindSubmatch(buf[:n]); m != nil {
				p.mu.Lock()
				p.ranges = append(p.ranges, string(m[1]))
				p.mu.Unlock()
			}
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// responses copies server → client and cuts the connection at cutAt.
func (p *cutProxy) responses(s, c net.Conn) {
	defer p.wg.Done()
	defer c.Close()
	defer s.Close()
	buf := make([]byte, 32<<10)
	var sent int64
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if p.cutAt > 0 && sent+int64(n) >= p.cutAt && p.cuts.Add(-1) >= 0 {
				_, _ = c.Write(buf[:p.cutAt-sent])
				p.cut.Add(1)
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // a reset, as when a server dies
				}
				return
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
			sent += int64(n)
			if t := p.total.Add(int64(n)); p.onBytes != nil {
				p.onBytes(t)
			}
		}
		if err != nil {
			return
		}
	}
}

// say collects console lines.
type sayLines struct {
	mu    sync.Mutex
	lines []string
}

func (s *sayLines) say(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, fmt.Sprintf(format, args...))
}

func (s *sayLines) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

func memInfoFile(t *testing.T, avail int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(p, fmt.Appendf(nil, "MemTotal: %d kB\nMemAvailable: %d kB\n", avail>>9, avail>>10), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadVia runs the second stage (index, memory check, chunks, unpack,
// progress posts) against servers, unpacking into a new directory.
func loadVia(t *testing.T, ctx context.Context, digest string, memAvail int64, servers ...*url.URL) (string, string, error) {
	t.Helper()
	f := newFetcher(t, digest, servers...)
	dir := filepath.Join(t.TempDir(), "newroot")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	console, err := loadInto(t, ctx, f, memAvail, dir)
	return dir, console, err
}

// newFetcher is the second stage's fetcher of image digest from servers.
func newFetcher(t *testing.T, digest string, servers ...*url.URL) *stage2.Fetcher {
	t.Helper()
	f, err := stage2.NewFetcher(stage2.FetchOptions{Servers: servers, MAC: realMAC, Digest: digest,
		Client: stage2.NewDownloadClient(0), Log: testLog(t), BackoffMin: 20 * time.Millisecond, BackoffMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// loadInto is loadVia's second stage into dir.
func loadInto(t *testing.T, ctx context.Context, f *stage2.Fetcher, memAvail int64, dir string) (string, error) {
	t.Helper()
	var con sayLines
	l := &stage2.Loader{Log: testLog(t), MemInfo: memInfoFile(t, memAvail)}
	// Progress posts as wwclient sends them in secure mode (the default):
	// from a privileged source port.
	post := agent.NewHTTPClient(agent.ClientOptions{Secure: true})
	err := l.Load(ctx, f, f.NewReporter(post, "", 10*time.Millisecond), dir, con.say)
	return con.String(), err
}

// sameTree compares the unpacked tree with the image (the image's /boot is
// served apart, its contents are not in the image).
func sameTree(t *testing.T, image, got string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(image, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(image, p)
		if rel == "." {
			return nil
		}
		if strings.HasPrefix(rel, "boot/") {
			return filepath.SkipDir
		}
		want, err := os.Lstat(p)
		if err != nil {
			return err
		}
		have, err := os.Lstat(filepath.Join(got, rel))
		if err != nil {
			return fmt.Errorf("unpacked tree: %w", err)
		}
		if want.Mode() != have.Mode() {
			return fmt.Errorf("%s: mode %v, want %v", rel, have.Mode(), want.Mode())
		}
		if want.Mode().IsRegular() {
			a, _ := os.ReadFile(p)
			b, err := os.ReadFile(filepath.Join(got, rel))
			if err != nil || !bytes.Equal(a, b) {
				return fmt.Errorf("%s: content differs (%v)", rel, err)
			}
			files++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 10 {
		t.Fatalf("only %d files compared", files)
	}
}

// wwStatus is `wwserver status --server URL` (the table).
func wwStatus(t *testing.T, ctx context.Context, base string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, paths(t, true).Wwserver, "status", "--server", base).CombinedOutput()
	if err != nil {
		t.Fatalf("wwserver status: %v\n%s", err, out)
	}
	return string(out)
}

// TestSecondStageServerCutAndKilled: a real wwserver's connections are cut
// mid-chunk three times, then the server is SIGKILLed mid-image and
// restarted on the same port. The second stage resumes each time (Range
// inside a chunk, the next chunk after the restart), and the unpacked
// tree equals the image. `wwserver status` shows IMAGE 100% with the bytes;
// a node whose memory is too small is refused before any chunk, with a
// console line and NO_MEMORY in status.
func TestSecondStageServerCutAndKilled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(rootCtx, 4*time.Minute)
	defer cancel()
	img := paddedImage(t, 24<<20) // ~24 chunks of random data
	tree := realTree(t, img)
	srv := startReal(t, ctx, tree, freeAddr(t))
	digest := imageDigest(t, ctx, srv.url())

	// Cuts: three connections are cut 300 KiB into their response.
	p := newCutProxy(t, srv.listen, 300<<10, 3)
	// SIGKILL at 16 MiB, restarted at once (the node retries with backoff).
	var killed atomic.Bool
	restart := make(chan error, 1)
	p.onBytes = func(total int64) {
		if total > 16<<20 && killed.CompareAndSwap(false, true) {
			srv.kill()
			restart <- srv.start()
		}
	}
	dir, console, err := loadVia(t, ctx, digest, 8<<30, p.url())
	if err != nil {
		t.Fatalf("second stage: %v\nconsole:\n%s", err, console)
	}
	if !killed.Load() {
		t.Fatal("the server was not killed during the download")
	}
	if err := <-restart; err != nil {
		t.Fatal(err)
	}
	t.Logf("console:\n%s", console)
	sameTree(t, img, dir)
	p.mu.Lock()
	ranges := append([]string(nil), p.ranges...)
	p.mu.Unlock()
	if p.cut.Load() != 3 {
		t.Errorf("%d connections cut, want 3", p.cut.Load())
	}
	resumed := 0
	for _, r := range ranges {
		if r != "bytes=0-" {
			resumed++
		}
	}
	if resumed < 3 {
		t.Errorf("ranges asked %q: want a resumed range (bytes=N-) after each cut", ranges)
	}
	waitFor(t, ctx, 30*time.Second, "status IMAGE 100%", func() bool {
		return strings.Contains(wwStatus(t, ctx, srv.url()), "IMAGE 100% ")
	})
	st := wwStatus(t, ctx, srv.url())
	t.Logf("wwserver status:\n%s", st)
	if !regexp.MustCompile(`r001 +IMAGE 100% 2\dM/2\dM `).MatchString(st) {
		t.Errorf("status table does not show the image's bytes:\n%s", st)
	}

	// Too small: refused before any chunk, console and status say so.
	chunksBefore := requestCount(t, ctx, srv.url(), "chunk")
	_, console, err = loadVia(t, ctx, digest, 64<<20, &url.URL{Scheme: "http", Host: srv.listen})
	if !errors.Is(err, stage2.ErrTooBig) {
		t.Fatalf("64 MiB node: err %v, want ErrTooBig", err)
	}
	if !strings.Contains(console, "ERROR: image does not fit in memory: the image needs") {
		t.Errorf("console:\n%s", console)
	}
	if n := requestCount(t, ctx, srv.url(), "chunk"); n != chunksBefore {
		t.Errorf("%v chunk requests for a refused image", n-chunksBefore)
	}
	st = wwStatus(t, ctx, srv.url())
	if !regexp.MustCompile(`r001 +IMAGE 0% 0/2\dM +NO_MEMORY `).MatchString(st) {
		t.Errorf("status does not show the refusal:\n%s", st)
	}
}

// requestCount is the server's count of answered requests of a stage
// (wwserver_http_requests_total, all codes).
func requestCount(t *testing.T, ctx context.Context, base, stage string) float64 {
	t.Helper()
	body, err := get(ctx, &http.Client{Timeout: 5 * time.Second}, base+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "wwserver_http_requests_total{") && strings.Contains(l, `stage="`+stage+`"`) {
			var v float64
			if _, err := fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}

// TestSecondStageCorruptChunkOtherServer: a byte flipped in a chunk file of
// server A's store is caught by the chunk's sha256 on the node, and the
// chunk is fetched from server B (a copy of the tree that had not built
// the image: the node asks it for the index first). The unpacked tree
// equals the image.
func TestSecondStageCorruptChunkOtherServer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(rootCtx, 4*time.Minute)
	defer cancel()
	img := paddedImage(t, 8<<20)
	tree := realTree(t, img)
	treeB := filepath.Join(t.TempDir(), "treeB")
	if out, err := exec.Command("cp", "-a", tree, treeB).CombinedOutput(); err != nil {
		t.Fatalf("copy tree: %v: %s", err, out)
	}
	a := startReal(t, ctx, tree, freeAddr(t))
	b := startReal(t, ctx, treeB, freeAddr(t))
	digest := imageDigest(t, ctx, a.url())

	// Flip a byte in the middle of the largest chunk file of A's store.
	var victim string
	var size int64
	_ = filepath.WalkDir(filepath.Join(tree, "state", "chunks", "sha256"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && fi.Size() > size {
				victim, size = p, fi.Size()
			}
		}
		return nil
	})
	if victim == "" {
		t.Fatal("no chunk in A's store")
	}
	data, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(victim, data, 0o644); err != nil {
		t.Fatal(err)
	}
	before := requestCount(t, ctx, b.url(), "chunk")
	ua, _ := url.Parse(a.url())
	ub, _ := url.Parse(b.url())
	dir, console, err := loadVia(t, ctx, digest, 8<<30, ua, ub)
	if err != nil {
		t.Fatalf("second stage: %v\nconsole:\n%s", err, console)
	}
	sameTree(t, img, dir)
	if n := requestCount(t, ctx, b.url(), "chunk") - before; n < 1 {
		t.Errorf("B served %v chunks, want the corrupt one", n)
	}
	t.Logf("corrupt chunk %s (%d bytes) on A; B served %v chunk(s)", filepath.Base(victim)[:12], size,
		requestCount(t, ctx, b.url(), "chunk")-before)
}
