package provision

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec   // route label, code
	bytes    *prometheus.CounterVec   // route label
	refusals *prometheus.CounterVec   // reason
	errors   *prometheus.CounterVec   // kind: panic, build, template, open, status
	wait     *prometheus.HistogramVec // route label: time to get the artifact (cache or build)
	inflight prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wwserver", Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests by stage (route) and status code.",
		}, []string{"stage", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wwserver", Subsystem: "http", Name: "sent_bytes_total",
			Help: "Response body bytes sent, by stage (route).",
		}, []string{"stage"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wwserver", Subsystem: "http", Name: "refusals_total",
			Help: "Requests refused, by reason (NOT_FOUND, BAD_ASSET, INSECURE_PORT, WRONG_SOURCE, BAD_MAC, BAD_RANGE, BAD_REQUEST).",
		}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wwserver", Subsystem: "http", Name: "errors_total",
			Help: "Server-side errors by kind (panic, build, template, open, status).",
		}, []string{"kind"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "wwserver", Subsystem: "http", Name: "artifact_wait_seconds",
			Help:    "Time to get a node's artifact from the builder (cache hit or build), by stage.",
			Buckets: []float64{.001, .01, .1, .5, 1, 5, 15, 60, 180, 600},
		}, []string{"stage"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "wwserver", Subsystem: "http", Name: "in_flight_requests",
			Help: "Requests being served.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.bytes, m.refusals, m.errors, m.wait, m.inflight} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register: %w", err)
		}
	}
	for _, r := range []string{ReasonNotFound, ReasonBadAsset, ReasonInsecurePort, ReasonWrongSource, ReasonTLSRequired, ReasonBadMAC, reasonBadRange, reasonBadRequest} {
		m.refusals.WithLabelValues(r)
	}
	for _, k := range []string{"panic", "build", "template", "open", "status"} {
		m.errors.WithLabelValues(k)
	}
	return m, nil
}
