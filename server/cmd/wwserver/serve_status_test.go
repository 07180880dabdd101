package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wwcluster/ww/server/daemon"
	"github.com/wwcluster/ww/server/status"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// replaceFile writes path by rename, as editors do.
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func nodeStatus(t *testing.T, base, name string) (status.NodeStatus, bool) {
	t.Helper()
	code, body := httpGet(t, base+"/status")
	if code != 200 {
		t.Fatalf("/status: %d %s", code, body)
	}
	var rep status.Report
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	for _, n := range rep.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return status.NodeStatus{}, false
}

// TestServeConfigEditKeepsStatus: removing a node from nodes.toml hides it
// from /status but keeps its history (it is back, stage intact, when the node
// is); an empty nodes.toml is refused (degraded, last good kept); only
// `wwserver status prune` drops history.
func TestServeConfigEditKeepsStatus(t *testing.T) {
	root, base := serveInProcess(t, daemon.Options{}, nil)
	for _, mac := range []string{"52:54:00:00:00:01", "52:54:00:00:00:02"} {
		if code, body := httpGet(t, base+"/ipxe/"+mac); code != 200 {
			t.Fatalf("ipxe %s: %d %s", mac, code, body)
		}
	}
	nodesFile := filepath.Join(root, "nodes.toml")
	good, err := os.ReadFile(nodesFile)
	if err != nil {
		t.Fatal(err)
	}
	cut := bytes.Index(good, []byte("[nodes.n002]"))
	if cut < 0 {
		t.Fatalf("init's nodes.toml has no n002:\n%s", good)
	}
	replaceFile(t, nodesFile, string(good[:cut]))
	if _, ok := nodeStatus(t, base, "n002"); ok {
		t.Error("n002 still listed after leaving nodes.toml")
	}
	// An empty nodes.toml is refused like any bad edit.
	replaceFile(t, nodesFile, "")
	code, body := httpGet(t, base+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "nodes.toml: no nodes") {
		t.Errorf("healthz with an empty nodes.toml: %d %s", code, body)
	}
	if _, ok := nodeStatus(t, base, "n001"); !ok {
		t.Error("empty nodes.toml replaced the last good config")
	}
	replaceFile(t, nodesFile, string(good))
	if code, body := httpGet(t, base+"/healthz"); code != 200 {
		t.Errorf("healthz after the fix: %d %s", code, body)
	}
	if n, ok := nodeStatus(t, base, "n002"); !ok || n.Stage != status.StageIPXE || n.LastSeen == 0 {
		t.Errorf("n002's status lost by config edits: %+v %v", n, ok)
	}
	// Explicit prune.
	var out bytes.Buffer
	if code := run([]string{"status", "prune", "n002", "--server", base}, &out, &out); code != 0 {
		t.Fatalf("status prune: %s", out.String())
	}
	if !strings.Contains(out.String(), "pruned n002") {
		t.Errorf("prune output: %s", out.String())
	}
	if n, _ := nodeStatus(t, base, "n002"); n.Stage != "" || n.LastSeen != 0 {
		t.Errorf("n002 after prune: %+v", n)
	}
	if n, _ := nodeStatus(t, base, "n001"); n.Stage != status.StageIPXE {
		t.Errorf("prune of n002 touched n001: %+v", n)
	}
	out.Reset()
	if code := run([]string{"status", "prune", "--server", base}, &out, &out); code == 0 {
		t.Error("prune without names or --removed succeeded")
	}
}

// TestServePlaceholderImageWarns: serving the tree init writes without
// --image-from: the server starts and /healthz stays 200, but names the
// placeholder image and its nodes ("ok, with warnings"); the log says so
// at start and when a node is sent the placeholder kernel; once a kernel is
// in place the warning is gone.
func TestServePlaceholderImageWarns(t *testing.T) {
	root, base, logs := serveInProcessLogs(t, daemon.Options{}, nil)
	code, body := httpGet(t, base+"/healthz")
	first, _, _ := strings.Cut(body, "\n")
	if code != http.StatusOK || !strings.HasPrefix(first, "ok, with warnings: 2 nodes cannot boot (n[001-002]): ") {
		t.Errorf("healthz of the placeholder tree: %d\n%s", code, body)
	}
	for _, want := range []string{`image "default" is the placeholder wwserver init wrote and will not boot`,
		"kernel boot/vmlinuz-0-placeholder is not a Linux kernel", "\nwarning: 2 nodes cannot boot"} {
		if !strings.Contains(body, want) {
			t.Errorf("healthz lacks %q:\n%s", want, body)
		}
	}
	if !strings.Contains(logs.String(), "nodes cannot boot this image") || !strings.Contains(logs.String(), "image=default") {
		t.Errorf("no start-up warning in the log:\n%s", logs.String())
	}
	// The kernel is still sent (the config says so), with a warning.
	if code, body := httpGet(t, base+"/kernel/52:54:00:00:00:01"); code != 200 || !strings.HasPrefix(body, "REPLACE ME") {
		t.Errorf("kernel: %d %.40q", code, body)
	}
	if !strings.Contains(logs.String(), "sending a kernel that is not a Linux kernel image") {
		t.Errorf("no warning when the placeholder kernel was sent:\n%s", logs.String())
	}
	replacePlaceholderKernel(t, root)
	if code, body := httpGet(t, base+"/healthz"); code != http.StatusOK || strings.Contains(body, "warning") {
		t.Errorf("healthz with a kernel in place: %d\n%s", code, body)
	}
}
