package tftp

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	transfers prometheus.Counter
	bytes     prometheus.Counter
	errors    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, sem chan struct{}) (*metrics, error) {
	m := &metrics{
		transfers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwserver_tftp_transfers_total",
			Help: "Completed TFTP read transfers.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwserver_tftp_bytes_total",
			Help: "Bytes sent in completed TFTP transfers.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wwserver_tftp_errors_total",
			Help: "Failed or refused TFTP requests, by reason (not_found, bad_name, write_refused, busy, transfer, bad_packet, ...).",
		}, []string{"reason"}),
	}
	active := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wwserver_tftp_active_transfers",
		Help: "TFTP transfers in progress.",
	}, func() float64 { return float64(len(sem)) })
	for _, c := range []prometheus.Collector{m.transfers, m.bytes, m.errors, active} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("tftp: register metrics: %w", err)
		}
	}
	return m, nil
}
