package integration

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wwcluster/ww/tools/lab"
)

// TestSingleStageBIOSBoot: boot = "initrd" keeps the single-stage path:
// iPXE loads the image as one gzip initrd and the kernel unpacks it; no
// wwimage=, no chunk served. (TestBIOSBoot, TestUEFIBoot and the others
// boot two-stage, the default.)
func TestSingleStageBIOSBoot(t *testing.T) {
	t.Parallel()
	n := lab.LabNode(1)
	e := newEnvWith(t, 5*time.Minute, envOptions{Tree: lab.TreeOptions{Nodes: []lab.Node{n}, Boot: "initrd"}})
	vm := e.startVM(lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: lab.BIOS})
	e.waitBooted(vm, n.Name) // checkPath: not through the second stage
	e.waitRuntime(n.Name)
	serial := vm.SerialTail(100000)
	if !strings.Contains(serial, "image.img.gz") || strings.Contains(serial, "wwimage=") {
		t.Error("iPXE did not load the single-stage image (image.img.gz, no wwimage=)")
	}
	m := metrics(t, e)
	if !strings.Contains(m, `code="200",stage="image"}`) || strings.Contains(m, `stage="chunk"`) {
		t.Errorf("want the image served whole and no chunk; metrics:\n%s", m)
	}
}

// imageWatch polls status from the start of a two-stage boot and keeps
// each distinct IMAGE state (sent, progress) of one node: the lab image is
// small, its download takes a second or two.
type imageWatch struct {
	stop func()
	wg   sync.WaitGroup
	mu   sync.Mutex
	seen []lab.NodeStatus
}

func (e *env) watchImage(name string) *imageWatch {
	wctx, stop := context.WithCancel(e.ctx)
	w := &imageWatch{stop: stop}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			qctx, cancel := context.WithTimeout(wctx, 5*time.Second)
			st, err := e.lab.Status(qctx)
			cancel()
			if err == nil {
				if ns, ok := st.Node(name); ok && ns.Stage == "IMAGE" {
					w.mu.Lock()
					if len(w.seen) == 0 || w.seen[len(w.seen)-1].Sent != ns.Sent || progressOf(w.seen[len(w.seen)-1]) != progressOf(ns) {
						w.seen = append(w.seen, ns)
					}
					w.mu.Unlock()
				}
			}
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	e.t.Cleanup(func() { w.end() })
	return w
}

// end stops the watch and returns what it saw.
func (w *imageWatch) end() []lab.NodeStatus {
	w.stop()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

// checkTwoStage checks a node that booted through the second stage: the
// console, status showing IMAGE with progress up to 100%, and the server's
// counters (chunks, index, modules and progress served; no whole image).
func (e *env) checkTwoStage(vm *lab.VM, w *imageWatch) {
	t := e.t
	t.Helper()
	serial := vm.SerialTail(100000)
	for _, want := range []string{"modules.img.gz", "wwimage=", "wwinit: two-stage boot: fetching image", "wwinit: network: ",
		"wwinit: image unpacked:", "wwinit: root: image and overlays in tmpfs"} {
		if !strings.Contains(serial, want) {
			t.Errorf("serial console does not show %q", want)
		}
	}
	seen := w.end()
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
	if len(seen) > 0 {
		if last := seen[len(seen)-1]; last.Progress == nil || last.Progress.Done != last.Progress.Total {
			t.Errorf("last IMAGE status: %+v, want done = total", last.Progress)
		}
	}
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
	resp := httpGet(t, e, e.lab.ServerURL()+"/metrics")
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
