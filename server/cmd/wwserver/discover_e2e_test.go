package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wwcluster/ww/server/status"
)

// A running server picks up `node add` without a restart, and gives
// discoverable nodes to unknown MACs that ask for an iPXE script: each node
// to exactly one MAC, even when several ask at once.
func TestServeDiscoversNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs a server")
	}
	wwserver, wwclient := sharedBinaries(t)
	root := filepath.Join(t.TempDir(), "tree")
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	runCLI(t, wwserver, "init", root, "--wwclient", wwclient, "--image-from", fakeImage(t),
		"--address", "127.0.0.1", "--listen", fmt.Sprintf("127.0.0.1:%d", port))
	srv := startServer(t, wwserver, root, base)
	client := &http.Client{}

	// Added while serving: no restart, the next request sees them.
	runCLI(t, wwserver, "node", "add", "d[1-2]", "--discoverable", "--ipaddr", "10.0.2.61", "--root", root)

	const first = "52:54:00:dd:00:01"
	script := fetch(t, client, "GET", base+"/ipxe/"+first)
	if script.code != 200 || !strings.Contains(string(script.body), base+"/kernel/"+first) ||
		strings.Contains(string(script.body), "not a known node") {
		t.Fatalf("discovering MAC got: %d\n%s", script.code, script.body)
	}
	if out := runCLI(t, wwserver, "node", "list", "d1", "--root", root); !strings.Contains(out, first) {
		t.Errorf("d1 not written with its MAC:\n%s", out)
	}
	// The node boots normally from here on: its kernel is served.
	if k := fetch(t, client, "GET", base+"/kernel/"+first); k.code != 200 || string(k.body) != fakeKernel {
		t.Errorf("kernel of the discovered node: %d", k.code)
	}

	// Three unknown MACs at once, one node (d2) left.
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		booted []string
	)
	for i := 2; i <= 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := fmt.Sprintf("52:54:00:dd:00:%02x", i)
			resp, err := client.Get(base + "/ipxe/" + mac)
			if err != nil {
				t.Error(err)
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("%s: %d %v", mac, resp.StatusCode, err)
				return
			}
			if !strings.Contains(string(body), "not a known node") {
				mu.Lock()
				booted = append(booted, mac)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(booted) != 1 {
		t.Fatalf("%d MACs got a node script for one node left: %v", len(booted), booted)
	}

	st := fetch(t, client, "GET", base+"/status")
	var view status.Report
	if err := json.Unmarshal(st.body, &view); err != nil {
		t.Fatalf("status: %v\n%s", err, st.body)
	}
	found := map[string]string{}
	for _, n := range view.Nodes {
		found[n.Name] = n.MAC
	}
	if found["d1"] != first || found["d2"] != booted[0] {
		t.Errorf("status nodes %v, want d1=%s d2=%s", found, first, booted[0])
	}
	if !strings.Contains(srv.logs.String(), `"msg":"discovered node"`) {
		t.Errorf("no discovery log line")
	}
	srv.stop()
}

// sharedBins builds wwserver and wwclient once for the tests that only run
// them (build time counts in make test).
var sharedBins struct {
	once               sync.Once
	dir                string
	wwserver, wwclient string
}

func sharedBinaries(t *testing.T) (wwserver, wwclient string) {
	t.Helper()
	sharedBins.once.Do(func() {
		dir, err := os.MkdirTemp("", "wwserver-test-bin-")
		if err != nil {
			t.Fatal(err)
		}
		sharedBins.dir = dir
		sharedBins.wwserver, sharedBins.wwclient = buildBinaries(t, dir)
	})
	if sharedBins.wwserver == "" {
		t.Fatal("building the binaries failed in an earlier test")
	}
	return sharedBins.wwserver, sharedBins.wwclient
}

// removeSharedBinaries runs after all tests (TestMain).
func removeSharedBinaries() {
	if sharedBins.dir != "" {
		os.RemoveAll(sharedBins.dir)
	}
}
