package integration

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/wwcluster/ww/server/etcdstate/etcdtest"
	"github.com/wwcluster/ww/tools/lab"
)

// Second wwserver of TestFailoverServerKilled: a second address on the lab
// bridge (the first server listens on every address at lab.DefaultPort).
const (
	serverBIP   = "10.99.0.2"
	serverBPort = 9874
)

// TestFailoverServerKilled: two wwservers share state through etcd in the
// lab namespace; the one serving the node (A, which also answers DHCP and
// TFTP) is killed with SIGKILL while the node's second stage downloads the
// image. The iPXE script A sent names B in wwserver=, so the second stage
// asks B for the index (B builds the image then) and the rest of the
// chunks, boots, and its wwclient (wwserver=A,B) sends
// its heartbeats to B; `wwserver status` on B shows the node.
func TestFailoverServerKilled(t *testing.T) {
	t.Parallel()
	n := lab.LabNode(1)
	// A larger (incompressible) image leaves a window of a few seconds in
	// which the image download is under way.
	img := paddedImage(t, 48<<20)
	var treeB string
	e := newEnvWith(t, 8*time.Minute, envOptions{Image: img, Tree: lab.TreeOptions{Nodes: []lab.Node{n}},
		SetupLab: func(l *lab.Lab) error {
			if out, err := exec.Command("ip", "-n", l.NS, "addr", "add", serverBIP+"/24", "dev", l.Bridge).CombinedOutput(); err != nil {
				return fmt.Errorf("second address: %v: %s", err, out)
			}
			etcd := etcdtest.StartProcessIn(t, []string{"ip", "netns", "exec", l.NS}, l.ServerIP, 2379, 2380)
			if err := setServerTOML(filepath.Join(l.TreeDir, "wwserver.toml"), func(srv map[string]any) {
				srv["state"] = etcdState(etcd.Endpoint, "a")
			}); err != nil {
				return err
			}
			// B serves a copy of the tree (what rsync would give it), with
			// its own address and no DHCP/TFTP (A's, in this namespace).
			treeB = filepath.Join(l.Dir, "treeB")
			if out, err := exec.Command("cp", "-a", l.TreeDir, treeB).CombinedOutput(); err != nil {
				return fmt.Errorf("copy tree: %v: %s", err, out)
			}
			if err := setServerTOML(filepath.Join(treeB, "wwserver.toml"), func(srv map[string]any) {
				srv["address"] = serverBIP
				srv["listen"] = fmt.Sprintf("%s:%d", serverBIP, serverBPort)
				srv["dhcp"].(map[string]any)["enabled"] = false
				srv["tftp"].(map[string]any)["enabled"] = false
				srv["state"] = etcdState(etcd.Endpoint, "b")
			}); err != nil {
				return err
			}
			return nil
		}})
	// B starts once A is healthy: the two copies' fingerprints differ (they
	// stamp files by inode and ctime, which a copy changes), so /healthz
	// says the servers disagree from B's first publication on.
	startServerB(t, e.lab, treeB)
	urlB := fmt.Sprintf("http://%s:%d", serverBIP, serverBPort)
	c := e.lab.HTTPClient()

	// A names B in its scripts once it has read the server list from etcd
	// (both publish every 10 s).
	waitFor(t, e.ctx, 30*time.Second, "A's iPXE script names B", func() bool {
		body, err := get(e.ctx, c, e.lab.ServerURL()+"/ipxe/"+n.MAC)
		return err == nil && strings.Contains(body, fmt.Sprintf("%s:%d/modules/", serverBIP, serverBPort)) &&
			strings.Contains(body, fmt.Sprintf("wwserver=%s:%d,%s:%d", e.lab.ServerIP, lab.DefaultPort, serverBIP, serverBPort))
	})

	vm := e.startVM(lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: lab.BIOS})
	// Kill A as soon as it has started sending the image.
	var killedAt time.Time
	waitFor(t, e.ctx, 4*time.Minute, "A sending the image", func() bool {
		st, err := status(e.ctx, c, e.lab.ServerURL())
		if err != nil {
			return false
		}
		node, _ := st.Node(n.Name)
		// Two-stage: iPXE fetches the kernel, drivers and overlays first;
		// IMAGE is the second stage's index request and progress posts.
		switch {
		case node.Heartbeat != nil,
			node.Stage == "IMAGE" && node.Progress != nil && node.Progress.Total > 0 && node.Progress.Done == node.Progress.Total:
			t.Fatalf("the node got past the image before A was killed (stage %s, progress %s)", node.Stage, progressOf(node))
		case node.Stage == "IMAGE" && node.Progress != nil && node.Progress.Done > 0:
			// mid-image: the node has reported chunks unpacked
			e.lab.KillServer()
			killedAt = time.Now()
			t.Logf("A killed at progress %s", progressOf(node))
			return true
		}
		return false
	})
	t.Logf("A killed (SIGKILL) while sending the image")
	// The failover time a node sees: from the kill until its next
	// download reaches B (B's table holds A's records too, from etcd:
	// "server" says who saw the node last).
	waitFor(t, e.ctx, time.Minute, "the node's first request at B", func() bool {
		st, err := status(e.ctx, c, urlB)
		if err != nil {
			return false
		}
		node, _ := st.Node(n.Name)
		return node.Server == "b"
	})
	failover := time.Since(killedAt)
	t.Logf("failover: the node's next request reached B %s after A was killed", failover.Round(10*time.Millisecond))

	e.waitBooted(vm, n.Name)
	// The second stage went on from B (B had not built the image before:
	// the node asked it for the index first).
	switched := false
	for _, l := range strings.Split(vm.SerialTail(100000), "\n") {
		switched = switched || (strings.Contains(l, `msg="image: switched server"`) && strings.Contains(l, fmt.Sprintf("to=%s:%d", serverBIP, serverBPort)))
	}
	if !switched {
		t.Errorf("the serial console does not show the image download moving to B")
	}

	// Heartbeats go on at B: two, with uptime moving forward.
	var first lab.NodeStatus
	waitFor(t, e.ctx, 2*time.Minute, "a heartbeat at B", func() bool {
		st, err := status(e.ctx, c, urlB)
		if err != nil {
			return false
		}
		first, _ = st.Node(n.Name)
		return first.Heartbeat != nil && first.Server == "b"
	})
	waitFor(t, e.ctx, time.Minute, "a later heartbeat at B", func() bool {
		st, err := status(e.ctx, c, urlB)
		if err != nil {
			return false
		}
		nd, _ := st.Node(n.Name)
		return nd.Heartbeat != nil && nd.Server == "b" && nd.Heartbeat.UptimeSeconds > first.Heartbeat.UptimeSeconds
	})
	if !strings.Contains(vm.SerialTail(100000), "switched to another server") {
		t.Errorf("wwclient did not log its switch from A to B")
	}
	out, err := exec.CommandContext(e.ctx, "ip", "netns", "exec", e.lab.NS, e.lab.Paths.Wwserver, "status", "--server", urlB).CombinedOutput()
	if err != nil || !strings.Contains(string(out), n.Name) {
		t.Errorf("wwserver status on B: %v\n%s", err, out)
	}
	t.Logf("wwserver status on B:\n%s", out)
}

// paddedImage is a copy of the lab image rootfs with size bytes of random
// data in /var/pad.bin.
func paddedImage(t *testing.T, size int) string {
	t.Helper()
	src := paths(t, true).Image
	dst := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy image: %v: %s", err, out)
	}
	pad := make([]byte, size)
	_, _ = rand.Read(pad)
	if err := os.WriteFile(filepath.Join(dst, "var", "pad.bin"), pad, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func etcdState(endpoint, id string) map[string]any {
	return map[string]any{"backend": "etcd", "etcd": map[string]any{
		"endpoints": []string{endpoint}, "server_id": id, "prefix": "/lab/"}}
}

func setServerTOML(path string, edit func(map[string]any)) error {
	srv := map[string]any{}
	if _, err := toml.DecodeFile(path, &srv); err != nil {
		return err
	}
	edit(srv)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := toml.NewEncoder(f).Encode(srv); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startServerB runs the second wwserver in the lab namespace; the test's
// cleanup (which runs before the lab's teardown) kills it by PID.
func startServerB(t *testing.T, l *lab.Lab, tree string) {
	t.Helper()
	logPath := filepath.Join(l.Dir, "wwserver-b.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("ip", "netns", "exec", l.NS, l.Paths.Wwserver, "serve", "--root", tree)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("---- wwserver B log (tail) ----\n%s", lab.Tail(logPath, 40))
		}
	})
}

func get(ctx context.Context, c *http.Client, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), err
}

func status(ctx context.Context, c *http.Client, base string) (*lab.Status, error) {
	body, err := get(ctx, c, base+"/status")
	if err != nil {
		return nil, err
	}
	return lab.ParseStatus([]byte(body))
}

// waitFor polls cond every 50 ms until it holds, failing the test after
// limit or when ctx ends.
func waitFor(t *testing.T, ctx context.Context, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}
