package tftp

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/dhcp/netnstest"
	"github.com/wwcluster/ww/server/status/statustest"
)

// Namespace tests: wwserver's TFTP server in one network namespace, real
// clients (tftp-hpa's tftp, curl) in the other, across a veth (MTU 1500).
// Needs root, iproute2, tftp-hpa, curl and ipxe (for /usr/lib/ipxe).

const ipxeDir = "/usr/lib/ipxe"

type nsEnv struct {
	p     *netnstest.Pair
	srv   *Server
	store *config.Store
	rec   *statustest.Recorder
	root  string
}

func requireIPXE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(ipxeDir, "undionly.kpxe")); err != nil {
		msg := "needs " + ipxeDir + "/undionly.kpxe (Debian: apt-get install -y ipxe)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

func startNS(t *testing.T, dir string, anticipate int) *nsEnv {
	t.Helper()
	p := netnstest.New(t, "52:54:00:00:00:01")
	root := t.TempDir()
	writeTree(t, root, ":69", dir, anticipate, p.ClientIP)
	store, err := config.NewStore(root, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	rec := &statustest.Recorder{}
	srv, err := New(Options{Store: store, Status: rec, Log: quietLog(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	p.StartServer(t, srv.Run, srv.Ready())
	return &nsEnv{p: p, srv: srv, store: store, rec: rec, root: root}
}

// client runs a command in the client namespace and returns its combined output.
func (e *nsEnv) client(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := e.p.ClientCommand(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func sameFile(t *testing.T, got, want string) {
	t.Helper()
	a, err := os.ReadFile(got)
	if err != nil {
		t.Fatalf("read %s: %v", got, err)
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("%s: %d bytes, not identical to %s (%d bytes)", got, len(a), want, len(b))
	}
}

func TestNetnsClients(t *testing.T) {
	netnstest.Require(t, "tftp", "curl")
	requireIPXE(t)
	e := startNS(t, ipxeDir, 8)
	server := e.p.ServerIP
	want := filepath.Join(ipxeDir, "undionly.kpxe")
	out := t.TempDir()

	t.Run("tftp-hpa octet", func(t *testing.T) {
		dst := filepath.Join(out, "hpa-octet")
		if o, err := e.client(t, "tftp", "-m", "binary", server, "-c", "get", "undionly.kpxe", dst); err != nil || o != "" {
			t.Fatalf("tftp: %v: %s", err, o)
		}
		sameFile(t, dst, want)
	})
	t.Run("tftp-hpa netascii", func(t *testing.T) {
		dst := filepath.Join(out, "hpa-netascii")
		if o, err := e.client(t, "tftp", "-m", "netascii", server, "-c", "get", "undionly.kpxe", dst); err != nil || o != "" {
			t.Fatalf("tftp: %v: %s", err, o)
		}
		sameFile(t, dst, want)
	})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"curl blksize 1468", []string{"--tftp-blksize", "1468"}},
		{"curl blksize 512", []string{"--tftp-blksize", "512"}},
		{"curl no options", []string{"--tftp-no-options"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(out, strings.ReplaceAll(tc.name, " ", "-"))
			args := append([]string{"-sS", "-o", dst}, tc.args...)
			args = append(args, "tftp://"+server+"/undionly.kpxe")
			if o, err := e.client(t, "curl", args...); err != nil {
				t.Fatalf("curl: %v: %s", err, o)
			}
			sameFile(t, dst, want)
		})
	}
	t.Run("curl snponly.efi", func(t *testing.T) {
		dst := filepath.Join(out, "snponly.efi")
		if o, err := e.client(t, "curl", "-sS", "-o", dst, "--tftp-blksize", "1468", "tftp://"+server+"/snponly.efi"); err != nil {
			t.Fatalf("curl: %v: %s", err, o)
		}
		sameFile(t, dst, filepath.Join(ipxeDir, "snponly.efi"))
	})

	t.Run("refusals", func(t *testing.T) {
		for _, name := range []string{"../../etc/passwd", "/etc/passwd", "ipxe/../../../etc/passwd", "missing.kpxe"} {
			dst := filepath.Join(out, "refused")
			o, _ := e.client(t, "tftp", "-m", "binary", server, "-c", "get", name, dst)
			if !strings.Contains(o, "Error code 1") {
				t.Errorf("get %s: %q", name, o)
			}
			if b, err := os.ReadFile(dst); err == nil && len(b) > 0 {
				t.Errorf("get %s: wrote %d bytes", name, len(b))
			}
		}
		src := filepath.Join(out, "upload")
		if err := os.WriteFile(src, []byte("payload"), 0o644); err != nil {
			t.Fatal(err)
		}
		o, _ := e.client(t, "tftp", "-m", "binary", server, "-c", "put", src, "uploaded")
		if !strings.Contains(o, "read-only") {
			t.Errorf("put: %q", o)
		}
		if _, err := os.Stat(filepath.Join(ipxeDir, "uploaded")); err == nil {
			t.Error("put created a file")
		}
	})

	waitFor(t, "transfers counted", func() bool { return counterValue(e.srv.m.transfers) >= 6 })
	ev, ok := e.rec.Find("undionly.kpxe")
	if !ok || ev.Node != "n001" || ev.MAC != "52:54:00:00:00:01" || ev.IP != e.p.ClientIP {
		t.Errorf("status event = %+v %v", ev, ok)
	}
	if _, ok := e.rec.Find("NOT_FOUND:missing.kpxe"); !ok {
		t.Error("no NOT_FOUND status event")
	}
	// "/etc/passwd" is the TFTP root's etc/passwd: not found, not a bad name.
	if got := counterValue(e.srv.m.errors.WithLabelValues("bad_name")); got != 2 {
		t.Errorf("bad_name errors = %v", got)
	}
}

// TestNetnsMeasure measures transfer times with curl for tftp.anticipate
// 1 (off), 8, 16 and blksize 512, 1468, and the same for dnsmasq when it
// is installed (Debian: dnsmasq-base). Opt-in: WWT_TFTP_MEASURE=1
// (WWT_TFTP_RUNS, default 5).
func TestNetnsMeasure(t *testing.T) {
	if os.Getenv("WWT_TFTP_MEASURE") == "" {
		t.Skip("set WWT_TFTP_MEASURE=1 to measure TFTP throughput (make test-measure runs it)")
	}
	netnstest.Require(t, "curl")
	requireIPXE(t)
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(ipxeDir, "undionly.kpxe"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "undionly.kpxe"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	randomFile(t, filepath.Join(dir, "8MiB"), 8<<20)
	runs := 5
	if v, err := strconv.Atoi(os.Getenv("WWT_TFTP_RUNS")); err == nil && v > 0 {
		runs = v
	}
	var report strings.Builder
	fmt.Fprintf(&report, "\n%-10s %-14s %-10s %-8s %9s %9s\n", "server", "file", "anticipate", "blksize", "median", "min")
	measure := func(p *netnstest.Pair, server, window string) {
		for _, file := range []string{"undionly.kpxe", "8MiB"} {
			for _, bs := range []string{"512", "1468"} {
				var times []float64
				for i := 0; i < runs+1; i++ { // run 0 warms up (and applies a reloaded window)
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					o, err := p.ClientCommand(ctx, "curl", "-sS", "-o", "/dev/null", "-w", "%{time_total}", "--tftp-blksize", bs,
						"tftp://"+p.ServerIP+"/"+file).CombinedOutput()
					cancel()
					if err != nil {
						t.Fatalf("curl: %v: %s", err, o)
					}
					if i == 0 {
						continue
					}
					v, err := strconv.ParseFloat(strings.TrimSpace(string(o)), 64)
					if err != nil {
						t.Fatalf("curl time %q: %v", o, err)
					}
					times = append(times, v)
				}
				sort.Float64s(times)
				fmt.Fprintf(&report, "%-10s %-14s %-10s %-8s %8.3fs %8.3fs\n", server, file, window, bs, times[len(times)/2], times[0])
			}
		}
	}
	t.Run("wwserver", func(t *testing.T) {
		e := startNS(t, dir, 8)
		for _, win := range []int{1, 8, 16} {
			writeTree(t, e.root, ":69", dir, win, e.p.ClientIP)
			if err := e.store.Reload(); err != nil {
				t.Fatal(err)
			}
			measure(e.p, "wwserver", strconv.Itoa(win))
		}
	})
	t.Run("dnsmasq", func(t *testing.T) {
		if _, err := exec.LookPath("dnsmasq"); err != nil {
			t.Skip("dnsmasq not installed")
		}
		p := netnstest.New(t, "52:54:00:00:00:01")
		ctx, cancel := context.WithCancel(context.Background())
		cmd := p.ServerCommand(ctx, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
			"--enable-tftp", "--tftp-root="+dir, "--interface="+p.ServerIf, "--bind-interfaces",
			"--user=root", "--group=root", "--pid-file="+filepath.Join(t.TempDir(), "pid"), "--log-facility=-")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); _ = cmd.Wait() })
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, cc := context.WithTimeout(context.Background(), 5*time.Second)
			err := p.ClientCommand(c, "curl", "-sS", "-o", "/dev/null", "tftp://"+p.ServerIP+"/undionly.kpxe").Run()
			cc()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dnsmasq TFTP not answering: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		measure(p, "dnsmasq", "-")
	})
	t.Log(report.String())
}
