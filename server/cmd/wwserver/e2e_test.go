package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wwcluster/ww/wwclient/agent"
)

// The end-to-end test builds the real binaries, writes a tree with
// `wwserver init`, runs `wwserver serve` on 127.0.0.1 and walks a node
// through its boot over HTTP.

// fakeKernel has an x86 bzImage header, so check and /healthz take it for a
// kernel; nothing boots it.
var fakeKernel = fakeBzImage("fake kernel for the e2e test \x00\x01\x02 0123456789abcdefghijklmnopqrstuvwxyz")

// fakeBzImage is note behind the start of an x86 bzImage: "MZ" and the
// "HdrS" setup header at 0x202 (what artifact.KernelFormat looks for).
func fakeBzImage(note string) string {
	b := make([]byte, 0x240, 0x240+len(note))
	copy(b, "MZ")
	copy(b[0x202:], "HdrS")
	return string(append(b, note...))
}

// replacePlaceholderKernel puts a fake bzImage where init put its
// placeholder kernel in the served tree dir.
func replacePlaceholderKernel(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, "images", initImage, "rootfs", "boot", "vmlinuz-0-placeholder")
	if err := os.WriteFile(p, []byte(fakeBzImage("test kernel")), 0o644); err != nil {
		t.Fatal(err)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Skip("no go tool to build the binaries")
	}
	return p
}

// buildBinaries builds wwserver (and wwclient when it has a main package)
// into dir; without a real wwclient a stand-in file is used.
func buildBinaries(t *testing.T, dir string) (wwserver, wwclient string) {
	t.Helper()
	goBin := goTool(t)
	wwserver = filepath.Join(dir, "wwserver")
	out, err := exec.Command(goBin, "build", "-o", wwserver, "github.com/wwcluster/ww/server/cmd/wwserver").CombinedOutput()
	if err != nil {
		t.Fatalf("go build wwserver: %v\n%s", err, out)
	}
	wwclient = filepath.Join(dir, "wwclient")
	if out, err := exec.Command(goBin, "build", "-o", wwclient, "github.com/wwcluster/ww/wwclient").CombinedOutput(); err != nil {
		t.Logf("no wwclient binary (%v: %s); using a stand-in", err, bytes.TrimSpace(out))
		if err := os.WriteFile(wwclient, []byte("#!/bin/sh\n# stand-in wwclient\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return wwserver, wwclient
}

// fakeImage is a tiny root filesystem with a kernel.
func fakeImage(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rootfs")
	files := map[string]string{
		"boot/vmlinuz-6.1.0-1-amd64": fakeKernel,
		"etc/hostname":               "e2e-image\n",
		"etc/os-release":             "PRETTY_NAME=\"e2e\"\n",
		"bin/busybox":                "not really busybox\n",
	}
	for p, data := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("busybox", filepath.Join(dir, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	logs *lockedBuffer
	done chan error
}

func startServer(t *testing.T, bin, root, base string) *server {
	t.Helper()
	s := &server{t: t, logs: &lockedBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, "serve", "--root", root, "--log-format", "json", "--log-level", "debug")
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs.String())
		}
	})
	waitHealthy(t, base, s.done, s.logs)
	return s
}

// waitHealthy polls base/healthz until it answers 200; a server that ends
// first (done) or takes over 30 s fails the test with its log.
func waitHealthy(t *testing.T, base string, done chan error, logs *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("server exited before it was healthy: %v\n%s", err, logs.String())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not healthy after 30s:\n%s", logs.String())
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Fatalf("server exit: %v\n%s", err, s.logs.String())
		}
	case <-time.After(30 * time.Second):
		s.t.Fatalf("server did not stop on SIGTERM\n%s", s.logs.String())
	}
}

type fetched struct {
	code int
	hdr  http.Header
	body []byte
}

func fetch(t *testing.T, client *http.Client, method, url string, hdr ...string) fetched {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fetched{resp.StatusCode, resp.Header, body}
}

func gunzip(t *testing.T, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(zr) // concatenated members too
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

// rootClient dials from a privileged source port; nil when not root.
func rootClient() *http.Client {
	if os.Geteuid() != 0 {
		return nil
	}
	// The agent's own privileged-port dialer, as wwclient uses it.
	dial := agent.PrivilegedDialer(net.Dialer{}, 600, 1023)
	return &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

func runCLI(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("wwserver %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs a server")
	}
	bins := t.TempDir()
	wwserver, wwclient := buildBinaries(t, bins)
	root := filepath.Join(t.TempDir(), "tree")
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	out := runCLI(t, wwserver, "init", root, "--wwclient", wwclient, "--image-from", fakeImage(t),
		"--address", "127.0.0.1", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	if !strings.Contains(out, "wrote a served tree") {
		t.Errorf("init output:\n%s", out)
	}
	// The agent and the test's clients run on this host, not from n001's
	// address: no source check here (serve_test.go tests it).
	serverCfg := filepath.Join(root, "wwserver.toml")
	cfgText, _ := os.ReadFile(serverCfg)
	writeTestFile(t, serverCfg, strings.Replace(string(cfgText), "source_check = true", "source_check = false", 1))
	// A runtime-overlay file and a template, edited later while serving.
	marker := filepath.Join(root, "overlays", "generic", "etc", "e2e-marker")
	writeTestFile(t, marker, "marker-one\n")
	writeTestFile(t, filepath.Join(root, "overlays", "generic", "etc", "e2e-node.ww"), "node={{.Node.Name}} ip={{.Node.Primary.IPAddr}}\n")

	if out := runCLI(t, wwserver, "check", "--root", root); !strings.Contains(out, "ok") {
		t.Errorf("check: %s", out)
	}
	if out := runCLI(t, wwserver, "nodes", "--root", root); !strings.Contains(out, "n001") || !strings.Contains(out, "52:54:00:00:00:01") {
		t.Errorf("nodes:\n%s", out)
	}
	if out := runCLI(t, wwserver, "build", "--root", root, "--workers", "2"); !strings.Contains(out, "built 2 node(s)") {
		t.Errorf("build:\n%s", out)
	}
	rendered := runCLI(t, wwserver, "render", "ipxe", "n001", "--root", root)
	if out := runCLI(t, wwserver, "render", "overlay", "n001", "generic", "--root", root); !strings.Contains(out, "node=n001") {
		t.Errorf("render overlay:\n%s", out)
	}

	srv := startServer(t, wwserver, root, base)
	client := &http.Client{}
	waitOutRacyWindow(t, root)
	const mac = "52:54:00:00:00:01"

	// iPXE script, as render printed it.
	script := fetch(t, client, "GET", base+"/ipxe/52-54-00-00-00-01")
	if script.code != 200 || string(script.body) != rendered {
		t.Fatalf("ipxe: %d\n%s\n--- render printed\n%s", script.code, script.body, rendered)
	}
	if !strings.Contains(string(script.body), base+"/kernel/"+mac) {
		t.Errorf("script does not point at this server:\n%s", script.body)
	}
	if u := fetch(t, client, "GET", base+"/ipxe/52:54:00:00:00:77"); u.code != 200 || !strings.Contains(string(u.body), "not a known node") {
		t.Errorf("unknown MAC: %d %s", u.code, u.body)
	}

	// Every file stage: full, Range, If-None-Match.
	for _, st := range []struct {
		path  string
		check func([]byte) bool
	}{
		{"/kernel/" + mac, func(b []byte) bool { return string(b) == fakeKernel }},
		{"/image/" + mac, func(b []byte) bool { return bytes.Contains(gunzip(t, b), []byte("e2e-image")) }},
		{"/overlay/system/" + mac, func(b []byte) bool { return bytes.Contains(gunzip(t, b), []byte("usr/sbin/wwclient")) }},
		{"/provision/" + mac + "?stage=kernel", func(b []byte) bool { return string(b) == fakeKernel }},
	} {
		full := fetch(t, client, "GET", base+st.path)
		if full.code != 200 || !st.check(full.body) {
			t.Fatalf("%s: %d, %d bytes", st.path, full.code, len(full.body))
		}
		if full.hdr.Get("Content-Length") != fmt.Sprint(len(full.body)) || full.hdr.Get("ETag") == "" {
			t.Errorf("%s: headers %v", st.path, full.hdr)
		}
		part := fetch(t, client, "GET", base+st.path, "Range", "bytes=2-11")
		if part.code != 206 || !bytes.Equal(part.body, full.body[2:12]) {
			t.Errorf("%s: range: %d %q", st.path, part.code, part.body)
		}
		same := fetch(t, client, "GET", base+st.path, "If-None-Match", full.hdr.Get("ETag"))
		if same.code != 304 || len(same.body) != 0 {
			t.Errorf("%s: If-None-Match: %d", st.path, same.code)
		}
	}

	// Runtime overlay: secure mode refuses an unprivileged port whatever it claims.
	ipxeUA := fetch(t, client, "GET", base+"/overlay/runtime/"+mac, "User-Agent", "iPXE/1.21.1")
	if ipxeUA.code != http.StatusForbidden {
		t.Errorf("runtime overlay to an unprivileged port: %d", ipxeUA.code)
	}
	rtClient := rootClient()
	if rtClient == nil {
		// Not root: turn secure mode off (also exercises reload while serving).
		cfg := filepath.Join(root, "wwserver.toml")
		data, _ := os.ReadFile(cfg)
		writeTestFile(t, cfg, strings.Replace(string(data), "secure = true", "secure = false", 1))
		rtClient = client
	}
	rt := fetch(t, rtClient, "GET", base+"/overlay/runtime/"+mac)
	if rt.code != 200 {
		t.Fatalf("runtime overlay: %d %s", rt.code, rt.body)
	}
	content := gunzip(t, rt.body)
	if !bytes.Contains(content, []byte("marker-one")) || !bytes.Contains(content, []byte("node=n001 ip=127.0.0.11")) {
		t.Errorf("runtime overlay lacks the marker or the rendered template")
	}
	part := fetch(t, rtClient, "GET", base+"/overlay/runtime/"+mac, "Range", "bytes=0-3")
	if part.code != 206 || !bytes.Equal(part.body, rt.body[:4]) {
		t.Errorf("runtime range: %d", part.code)
	}
	if same := fetch(t, rtClient, "GET", base+"/overlay/runtime/"+mac, "If-None-Match", rt.hdr.Get("ETag")); same.code != 304 {
		t.Errorf("runtime If-None-Match: %d", same.code)
	}

	// Edit the overlay source while serving: the next fetch has it.
	writeTestFile(t, marker, "marker-two, longer\n")
	rt2 := fetch(t, rtClient, "GET", base+"/overlay/runtime/"+mac, "If-None-Match", rt.hdr.Get("ETag"))
	if rt2.code != 200 || rt2.hdr.Get("ETag") == rt.hdr.Get("ETag") {
		t.Fatalf("edited overlay: %d, ETag %q", rt2.code, rt2.hdr.Get("ETag"))
	}
	if c := gunzip(t, rt2.body); !bytes.Contains(c, []byte("marker-two, longer")) || bytes.Contains(c, []byte("marker-one")) {
		t.Errorf("edited overlay not served")
	}

	// The real agent: wwclient --once pulls the runtime overlay into a temp
	// root and heartbeats; the node then shows its heartbeat in status.
	nodeRoot := t.TempDir()
	agentCfg := filepath.Join(t.TempDir(), "wwclient.toml")
	writeTestFile(t, agentCfg, fmt.Sprintf("node = \"n001\"\nserver = \"127.0.0.1:%d\"\nsecure = %v\n[[network]]\nname = \"eth0\"\nhwaddr = %q\nprimary = true\n",
		port, os.Geteuid() == 0, mac))
	emptyCmdline := filepath.Join(t.TempDir(), "cmdline")
	writeTestFile(t, emptyCmdline, "")
	agentOut, err := exec.Command(wwclient, "--once", "--root", nodeRoot, "--config", agentCfg,
		"--cmdline", emptyCmdline, "--asset-tag-file", "").CombinedOutput()
	if err != nil {
		t.Fatalf("wwclient --once: %v\n%s", err, agentOut)
	}
	if b, err := os.ReadFile(filepath.Join(nodeRoot, "etc", "e2e-marker")); err != nil || string(b) != "marker-two, longer\n" {
		t.Errorf("wwclient applied etc/e2e-marker = %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(nodeRoot, "etc", "e2e-node")); err != nil || !strings.Contains(string(b), "node=n001") {
		t.Errorf("wwclient applied etc/e2e-node = %q, %v", b, err)
	}

	// Status, live.
	st := fetch(t, client, "GET", base+"/status")
	if st.code != 200 || !strings.Contains(string(st.body), "n001") || !strings.Contains(string(st.body), "RUNTIME_OVERLAY") ||
		!strings.Contains(string(st.body), `"boot_id"`) {
		t.Errorf("status: %d %s", st.code, st.body)
	}
	if m := fetch(t, client, "GET", base+"/metrics"); !strings.Contains(string(m.body), `wwserver_http_requests_total{code="206",stage="kernel"}`) ||
		!strings.Contains(string(m.body), "go_goroutines") {
		t.Errorf("metrics lack request counts or Go collectors")
	}

	// Restart: the status survives.
	srv.stop()
	srv = startServer(t, wwserver, root, base)
	out = runCLI(t, wwserver, "status", "--json", "--root", root)
	if !strings.Contains(out, "n001") || !strings.Contains(out, "RUNTIME_OVERLAY") {
		t.Errorf("status after restart:\n%s", out)
	}
	if !strings.Contains(out, "52:54:00:00:00:77") {
		t.Errorf("status after restart lacks the unknown MAC:\n%s", out)
	}

	// SIGHUP reloads and the server keeps serving.
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	srv.waitLog("SIGHUP: reloading config")
	if h := fetch(t, client, "GET", base+"/healthz"); h.code != 200 {
		t.Errorf("healthz after SIGHUP: %d", h.code)
	}
	// A broken nodes.toml: degraded, still serving the last good config.
	nodesFile := filepath.Join(root, "nodes.toml")
	good, _ := os.ReadFile(nodesFile)
	writeTestFile(t, nodesFile, string(good)+"\n[nodes.n001.bogus]\n")
	if h := fetch(t, client, "GET", base+"/healthz"); h.code != http.StatusServiceUnavailable || !strings.Contains(string(h.body), "nodes.toml") {
		t.Errorf("healthz with a bad nodes.toml: %d %s", h.code, h.body)
	}
	if s := fetch(t, client, "GET", base+"/ipxe/"+mac); s.code != 200 || !strings.Contains(string(s.body), "n001") {
		t.Errorf("not serving the last good config: %d\n%s", s.code, s.body)
	}
	writeTestFile(t, nodesFile, string(good))
	if h := fetch(t, client, "GET", base+"/healthz"); h.code != 200 {
		t.Errorf("healthz after fixing nodes.toml: %d %s", h.code, h.body)
	}
	srv.stop()
}

// waitLog polls the server's log for text.
func (s *server) waitLog(text string) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(s.logs.String(), text) {
		if time.Now().After(deadline) {
			s.t.Fatalf("log never said %q:\n%s", text, s.logs.String())
		}
		<-tick.C
	}
}

// racyWindow mirrors server/artifact: a source file changed this recently is
// fingerprinted by content as well, so the ETags of what it goes into change
// once (same content, new ETag) when the window passes.
const racyWindow = 3 * time.Second

// waitOutRacyWindow waits until every file of the tree is older than the
// build's racy window, so the conditional requests below see stable ETags.
// A time window, not synchronisation with the server: nothing else to poll.
func waitOutRacyWindow(t *testing.T, root string) {
	t.Helper()
	var newest time.Time
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p == filepath.Join(root, "state") {
			return filepath.SkipDir // the server's own output
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		for _, ts := range []syscall.Timespec{st.Mtim, st.Ctim} {
			if tm := time.Unix(ts.Unix()); tm.After(newest) {
				newest = tm
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(newest.Add(racyWindow + 500*time.Millisecond)); d > 0 {
		time.Sleep(d)
	}
}

// writeTestFile replaces path atomically (write, then rename), as editors
// and config management do, so the server never reads a half-written file.
func writeTestFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := path + ".e2e-tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
