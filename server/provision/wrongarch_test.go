package provision

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/status"
)

// archBuilder is the fake builder with a kernel architecture.
type archBuilder struct {
	*fakeBuilder
	arch string
}

func (a archBuilder) ImageArch(*config.Node) (string, error) { return a.arch, nil }

func newArchEnv(t *testing.T, arch string) *env {
	t.Helper()
	e := &env{t: t, cfg: newFakeConfig(t, true, ""), builder: newFakeBuilder(), status: &fakeStatus{},
		reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	h, err := New(Options{Config: e.cfg, Builder: archBuilder{e.builder, arch}, Status: e.status, Registry: e.reg,
		Log: newTestLogger(e.logs)})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

// TestWrongArch: with the image's architecture known (arm64 here), the
// node's iPXE script and GRUB configs check the loader's; the reports a
// loader on another architecture sends (iPXE and GRUB over HTTP, GRUB over
// TFTP) are recorded as WRONG_ARCH:ARCH at its stage, with whatever the
// node sent as ARCH reduced to a plain word.
func TestWrongArch(t *testing.T) {
	e := newArchEnv(t, "arm64")
	resp, body := e.get("/ipxe/" + macN002)
	wantCode(t, resp, body, http.StatusOK)
	if !strings.Contains(string(body), "iseq ${buildarch} arm64 && goto ww_arch_ok ||") ||
		!strings.Contains(string(body), "/ipxe/"+macN002+"/wrongarch/${buildarch}") {
		t.Errorf("iPXE script has no architecture check:\n%s", body)
	}
	resp, body = e.get("/grub/" + macN002)
	wantCode(t, resp, body, http.StatusOK)
	if !strings.Contains(string(body), `if [ "$grub_cpu" != 'arm64' ]; then`) {
		t.Errorf("GRUB config has no architecture check:\n%s", body)
	}
	for _, tc := range []struct{ path, stage, sent string }{
		{"/ipxe/" + macN002 + "/wrongarch/x86_64", status.StageIPXE, "WRONG_ARCH:x86_64"},
		{"/grub/" + macN002 + "/wrongarch/x86_64", status.StageGRUB, "WRONG_ARCH:x86_64"},
		{"/grub/" + macN002 + "/wrongarch/x86%2064", status.StageGRUB, "WRONG_ARCH:?"},
	} {
		resp, body := e.get(tc.path)
		wantCode(t, resp, body, http.StatusOK)
		ev := e.status.last(t)
		if ev.Node != "n002" || ev.Stage != tc.stage || ev.Sent != tc.sent {
			t.Errorf("%s: event %+v, want stage %s sent %s", tc.path, ev, tc.stage, tc.sent)
		}
	}
	content, sent, ok, err := readTFTP(t, e, "grub/"+macN002+"/wrongarch/x86_64")
	if !ok || err != nil || !strings.HasPrefix(content, "#") || sent == nil {
		t.Fatalf("TFTP report: %q, %v, %v", content, ok, err)
	}
	sent() // the TFTP server calls it once the transfer completed
	if ev := e.status.last(t); ev.Node != "n002" || ev.Stage != status.StageGRUB || ev.Sent != "WRONG_ARCH:x86_64" {
		t.Errorf("TFTP report: event %+v", ev)
	}
	if _, _, ok, _ := readTFTP(t, e, "grub/not-a-mac/wrongarch/x86_64"); ok {
		t.Error("TFTP report for a bad MAC was answered")
	}
	resp, body = e.get("/ipxe/not-a-mac/wrongarch/x86_64")
	wantCode(t, resp, body, http.StatusBadRequest)

	// Unknown architecture: no check.
	plain := newArchEnv(t, "")
	_, body = plain.get("/ipxe/" + macN002)
	if strings.Contains(string(body), "buildarch") {
		t.Errorf("unknown architecture, but the script checks one:\n%s", body)
	}
}
