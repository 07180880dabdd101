package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/wwclient/agent"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runtimeImage(t *testing.T) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	w := cpio.NewWriter(zw)
	body := "10.0.2.11 n001\n"
	for _, h := range []*cpio.Header{
		{Name: "etc", Mode: cpio.TypeDir | 0o755},
		{Name: "etc/hosts", Mode: cpio.TypeReg | 0o644, Size: int64(len(body))},
	} {
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			w.Write([]byte(body))
		}
	}
	w.Close()
	zw.Close()
	return buf.Bytes()
}

type server struct {
	*httptest.Server
	mu         sync.Mutex
	heartbeats []nodeapi.HeartbeatMessage
	seen       chan string
}

func newServer(t *testing.T) *server {
	s := &server{seen: make(chan string, 100)}
	img := runtimeImage(t)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /heartbeat/{mac}", func(w http.ResponseWriter, r *http.Request) {
		var hb nodeapi.HeartbeatMessage
		json.NewDecoder(r.Body).Decode(&hb)
		s.mu.Lock()
		s.heartbeats = append(s.heartbeats, hb)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /overlay/runtime/{mac}", func(w http.ResponseWriter, r *http.Request) {
		defer func() { s.seen <- r.PathValue("mac") }()
		w.Header().Set("ETag", `"rt1"`)
		if r.Header.Get("If-None-Match") == `"rt1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write(img)
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func writeConfig(t *testing.T, server string) string {
	p := filepath.Join(t.TempDir(), "wwclient.toml")
	cfg := fmt.Sprintf(`node = "n001"
server = %q
update_interval = 60
secure = false
asset_key = ""
root = "tmpfs"
[[network]]
name = "eth0"
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.0.2.11"
netmask = "255.255.255.0"
gateway = ""
primary = true
`, server)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func emptyCmdline(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "cmdline")
	os.WriteFile(p, []byte("console=ttyS0\n"), 0o644)
	return p
}

func TestVersionAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "wwclient ") {
		t.Fatalf("--version: %d %q", code, out.String())
	}
	if code := run([]string{"--bogus"}, &out, &errb); code != 2 {
		t.Fatalf("unknown flag: %d", code)
	}
	if code := run([]string{"extra"}, &out, &errb); code != 2 {
		t.Fatalf("extra arg: %d", code)
	}
	if code := run([]string{"--log-level", "loud"}, &out, &errb); code != 2 {
		t.Fatalf("bad level: %d", code)
	}
}

func TestOnceWithServerOverride(t *testing.T) {
	srv := newServer(t)
	// the config names a server where nothing listens: --server wins
	cfg := writeConfig(t, "127.0.0.1:1")
	root := t.TempDir()
	var out, errb bytes.Buffer
	code := run([]string{"--once", "--root", root, "--config", cfg, "--cmdline", emptyCmdline(t), "--server", srv.URL}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/hosts")); err != nil || string(b) != "10.0.2.11 n001\n" {
		t.Fatalf("applied: %q %v", b, err)
	}
	if mac := <-srv.seen; mac != "52:54:00:00:00:01" {
		t.Fatalf("mac %q", mac)
	}
	srv.mu.Lock()
	if len(srv.heartbeats) != 1 || srv.heartbeats[0].Node != "n001" {
		t.Fatalf("heartbeats %+v", srv.heartbeats)
	}
	srv.mu.Unlock()
	// host:port form works too, and without --server the config's dead
	// server makes --once fail
	hostport := strings.TrimPrefix(srv.URL, "http://")
	if code := run([]string{"--once", "--root", root, "--config", cfg, "--cmdline", emptyCmdline(t), "--server", hostport}, &out, &errb); code != 0 {
		t.Fatalf("host:port: %d %s", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"--once", "--root", root, "--config", cfg, "--cmdline", emptyCmdline(t)}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "sync failed") {
		t.Fatalf("dead server: %d %s", code, errb.String())
	}
}

func TestOnceFromKernelCmdline(t *testing.T) {
	srv := newServer(t)
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	os.WriteFile(cmdline, []byte("wwid=52-54-00-00-00-07 wwserver="+strings.TrimPrefix(srv.URL, "http://")+"\n"), 0o644)
	root := t.TempDir()
	var out, errb bytes.Buffer
	// no config file at all: MAC and server from the kernel command line
	code := run([]string{"--once", "--root", root, "--config", filepath.Join(t.TempDir(), "none.toml"), "--cmdline", cmdline}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if mac := <-srv.seen; mac != "52:54:00:00:00:07" {
		t.Fatalf("mac %q", mac)
	}
}

func TestBadConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(p, []byte("root = \"nfs\"\n"), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"--once", "--config", p, "--cmdline", emptyCmdline(t)}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "root:") {
		t.Fatalf("%d %s", code, errb.String())
	}
	// no server anywhere
	var errc bytes.Buffer
	if code := run([]string{"--once", "--config", writeConfig(t, ""), "--cmdline", emptyCmdline(t)}, &out, &errc); code != 1 || !strings.Contains(errc.String(), "no server address") {
		t.Fatalf("%d %s", code, errc.String())
	}
}

func TestSecondInstanceExitsZero(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "wwclient.lock")
	held, err := agent.Lock(lock)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	t.Setenv("NOTIFY_SOCKET", "")
	var out, errb bytes.Buffer
	if code := run([]string{"--lock", lock, "--config", writeConfig(t, "127.0.0.1:1")}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "already running") {
		t.Fatalf("%d %s", code, errb.String())
	}
}

// The daemon end to end: first sync at once, SIGHUP syncs again, SIGTERM
// exits cleanly with code 0; the ETag is kept in the state dir.
func TestDaemonSignals(t *testing.T) {
	srv := newServer(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	state := filepath.Join(dir, "state")
	var out, errb syncBuf
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"--no-net-wait", "--root", root, "--config", writeConfig(t, srv.URL), "--cmdline", emptyCmdline(t),
			"--state-dir", state, "--lock", filepath.Join(dir, "lock")}, &out, &errb)
	}()
	select {
	case <-srv.seen: // first sync, immediately
	case <-time.After(30 * time.Second):
		t.Fatalf("no first sync: %s", errb.String())
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.seen:
	case <-time.After(30 * time.Second):
		t.Fatalf("SIGHUP did not sync: %s", errb.String())
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("SIGTERM did not stop the daemon: %s", errb.String())
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/hosts")); err != nil || len(b) == 0 {
		t.Fatalf("overlay not applied: %v", err)
	}
	st, err := os.ReadFile(filepath.Join(state, "runtime.etag"))
	if err != nil || !strings.Contains(string(st), `"etag":"\"rt1\""`) {
		t.Fatalf("state %q %v", st, err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.heartbeats) != 2 || srv.heartbeats[1].RuntimeETag != `"rt1"` {
		t.Fatalf("heartbeats %+v", srv.heartbeats)
	}
	if !strings.Contains(errb.String(), "msg=stopped") {
		t.Fatalf("log: %s", errb.String())
	}
}
