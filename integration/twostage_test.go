package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wwcluster/ww/tools/lab"
)

// TestTwoStageBIOSBoot: boot = "twostage": iPXE loads only the kernel, the
// network drivers and the overlays; wwclient (/init) brings the NIC up,
// fetches the chunked image over HTTP into the tmpfs root, lays the
// overlays over it and boots it. Status shows IMAGE with the node's
// progress while it downloads.
func TestTwoStageBIOSBoot(t *testing.T) {
	t.Parallel()
	twoStageBoot(t, lab.BIOS, 6*time.Minute)
}

// TestTwoStageUEFIBoot: the same with OVMF (PXE, snponly.efi).
func TestTwoStageUEFIBoot(t *testing.T) {
	t.Parallel()
	twoStageBoot(t, lab.UEFI, 7*time.Minute)
}

func twoStageBoot(t *testing.T, fw lab.Firmware, timeout time.Duration) {
	n := lab.LabNode(1)
	e := newEnvWith(t, timeout, envOptions{Tree: lab.TreeOptions{Nodes: []lab.Node{n}, Boot: "twostage"}})

	// Watch status from the start: the lab image is small, its download
	// takes a second or two.
	wctx, stop := context.WithCancel(e.ctx)
	var mu sync.Mutex
	var seen []lab.NodeStatus
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			qctx, cancel := context.WithTimeout(wctx, 5*time.Second)
			st, err := e.lab.Status(qctx)
			cancel()
			if err == nil {
				if ns, ok := st.Node(n.Name); ok && ns.Stage == "IMAGE" {
					mu.Lock()
					if len(seen) == 0 || seen[len(seen)-1].Sent != ns.Sent || progressOf(seen[len(seen)-1]) != progressOf(ns) {
						seen = append(seen, ns)
					}
					mu.Unlock()
				}
			}
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() {
		stop()
		wg.Wait()
	}()

	vm := e.startVM(lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: fw})
	e.waitBooted(vm, n.Name)
	e.waitRuntime(n.Name)
	stop()
	wg.Wait()

	serial := vm.SerialTail(100000)
	for _, want := range []string{"modules.img.gz", "wwimage=", "wwinit: two-stage boot: fetching image", "wwinit: network: ",
		"wwinit: image unpacked:", "wwinit: root: image and overlays in tmpfs"} {
		if !strings.Contains(serial, want) {
			t.Errorf("serial console does not show %q", want)
		}
	}
	if strings.Contains(serial, "image.img.gz") {
		t.Error("iPXE downloaded the single-stage image")
	}
	for _, l := range strings.Split(serial, "\n") {
		if strings.Contains(l, "wwinit: ") && (strings.Contains(l, "image") || strings.Contains(l, "network")) {
			t.Logf("console: %s", strings.TrimSpace(l))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	withProgress := 0
	for _, s := range seen {
		t.Logf("status: stage %s, sent %s, progress %s", s.Stage, s.Sent, progressOf(s))
		if s.Progress != nil {
			withProgress++
		}
	}
	if withProgress == 0 {
		t.Errorf("status never showed IMAGE with progress (seen %d IMAGE states)", len(seen))
	}
	if len(seen) == 0 {
		return
	}
	last := seen[len(seen)-1]
	if last.Progress == nil || last.Progress.Done != last.Progress.Total {
		t.Errorf("last IMAGE status: %+v, want done = total", last.Progress)
	}

	// The server served chunks and took progress posts.
	m := metrics(t, e)
	for _, want := range []string{`code="200",stage="chunk"`, `code="204",stage="progress"`, `code="200",stage="image-index"`, `code="200",stage="modules"`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, `code="200",stage="image"}`) {
		t.Error("the single-stage image was served")
	}
}

func progressOf(s lab.NodeStatus) string {
	if s.Progress == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%d", s.Progress.Done, s.Progress.Total)
}

// metrics returns the request counters of /metrics.
func metrics(t *testing.T, e *env) string {
	t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet, e.lab.ServerURL()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.lab.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "wwserver_http_requests_total{") && !strings.HasSuffix(l, " 0") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
