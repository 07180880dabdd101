package etcdstate

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// batchMetrics: how the lease writer batches (wwserver's /metrics).
type batchMetrics struct {
	batchSize     prometheus.Histogram
	commitSeconds prometheus.Histogram
	conflicts     prometheus.Counter
	busy          prometheus.Counter
	readAnswers   prometheus.Counter
}

func newBatchMetrics(reg prometheus.Registerer) (*batchMetrics, error) {
	m := &batchMetrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wwserver_etcd_lease_batch_size",
			Help:    "Lease claims per etcd transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 100},
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wwserver_etcd_lease_commit_seconds",
			Help:    "Time to commit one batch of lease claims in etcd.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwserver_etcd_lease_conflicts_total",
			Help: "Lease claims whose compare-and-swap failed (another writer changed a key); each is decided again.",
		}),
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwserver_etcd_lease_busy_total",
			Help: "Lease claims refused because the lease writer's queue was full or they timed out waiting in it.",
		}),
		readAnswers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wwserver_etcd_lease_read_answers_total",
			Help: "Lease claims that lost a race and were then answered by a read (the lease they asked for was already theirs, or the address another's).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.batchSize, m.commitSeconds, m.conflicts, m.busy, m.readAnswers} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}
