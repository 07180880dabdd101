package provision

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// counterValue reads one counter of a vector from the registry (label ""
// reads a plain counter).
func counterValue(t *testing.T, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" {
				return m.GetCounter().GetValue()
			}
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, true)
	e.get("/kernel/" + macN002)
	e.get("/overlay/runtime/" + macN002) // refused: insecure port
	resp, body := e.get("/metrics")
	wantCode(t, resp, body, http.StatusOK)
	for _, want := range []string{
		`wwserver_http_requests_total{code="200",stage="kernel"} 1`,
		`wwserver_http_requests_total{code="403",stage="runtime"} 1`,
		`wwserver_http_refusals_total{reason="INSECURE_PORT"} 1`,
		`wwserver_http_refusals_total{reason="BAD_ASSET"} 0`,
		`wwserver_http_sent_bytes_total{stage="kernel"}`,
		`wwserver_http_artifact_wait_seconds_bucket{stage="kernel"`,
		`wwserver_http_errors_total{kind="panic"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if got := counterValue(t, e.reg, "wwserver_http_sent_bytes_total", "stage", "kernel"); got < 20 {
		t.Errorf("kernel bytes = %v", got)
	}
	// A second handler on its own registry works (no global state).
	if _, err := New(Options{Config: e.cfg, Builder: e.builder, Status: e.status}); err != nil {
		t.Fatal(err)
	}
	// The same registry twice is an error, not a panic.
	if _, err := New(Options{Config: e.cfg, Builder: e.builder, Status: e.status, Registry: e.reg}); err == nil {
		t.Error("registering twice succeeded")
	}
}
