package integration

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/wwcluster/ww/server/nodeapi"
	"github.com/wwcluster/ww/tools/lab"
)

// TestNetworkDriversBoot: a node with network_drivers = ["virtio_net"]
// gets a stage-1 initrd of the lab image's real Debian kernel modules
// holding virtio_net, its dependencies and the virtio bus drivers but no
// other NIC driver, smaller than the default node's (every NIC driver),
// and boots two-stage with it (its NIC came up from it: the image came
// over HTTP).
func TestNetworkDriversBoot(t *testing.T) {
	t.Parallel()
	n1, n2 := lab.LabNode(1), lab.LabNode(2)
	n1.NetworkDrivers = []string{"virtio_net"}
	e := newEnv(t, 5*time.Minute, []lab.Node{n1, n2})
	watch := e.watchImage(n1.Name)
	vm := e.startVM(lab.VMOptions{Name: n1.Name, MAC: n1.MAC, Firmware: lab.BIOS})
	e.waitBooted(vm, n1.Name)
	e.checkTwoStage(vm, watch)

	listed, listedSize := modulesOf(t, e, n1.MAC)
	all, allSize := modulesOf(t, e, n2.MAC)
	t.Logf("modules initrd: network_drivers [virtio_net] %d bytes, %d modules %v; default %d bytes, %d modules",
		listedSize, len(listed), listed, allSize, len(all))
	for _, want := range []string{"virtio_net", "net_failover", "failover", "virtio_pci", "virtio", "virtio_ring"} {
		if !listed[want] {
			t.Errorf("network_drivers initrd lacks %s", want)
		}
	}
	for _, other := range []string{"e1000", "e1000e", "igb", "8139too", "vmxnet3"} {
		if listed[other] {
			t.Errorf("network_drivers initrd holds %s, not listed", other)
		}
		if !all[other] {
			t.Errorf("default initrd lacks %s", other)
		}
	}
	if listedSize*2 > allSize {
		t.Errorf("network_drivers initrd %d bytes, default %d: want less than half", listedSize, allSize)
	}
}

// modulesOf fetches the node's modules initrd and returns its module
// names and its size.
func modulesOf(t *testing.T, e *env, mac string) (map[string]bool, int64) {
	t.Helper()
	resp := httpGet(t, e, nodeapi.Modules.URL(e.lab.ServerURL(), mac))
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET modules of %s: %s", mac, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	mods := map[string]bool{}
	rd := cpio.NewReader(zr)
	for {
		h, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("modules of %s: %v", mac, err)
		}
		if name, ok := strings.CutSuffix(path.Base(h.Name), ".ko"); ok {
			mods[strings.ReplaceAll(name, "-", "_")] = true
		}
	}
	return mods, int64(len(data))
}

// httpGet GETs url from the lab's server (the response is the caller's).
func httpGet(t *testing.T, e *env, url string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.lab.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
