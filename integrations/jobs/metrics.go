package jobs

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// metrics are the job queue's Prometheus series.
type metrics struct {
	enqueuedTotal *prometheus.CounterVec // by type
	restoredTotal *prometheus.CounterVec // by type
	outcomes      *prometheus.CounterVec // by type and outcome: succeeded, retried, deferred, dead
	breakers      *prometheus.GaugeVec   // by api: 0 closed, 1 half-open, 2 open
}

// newMetrics makes the job series and, with a reg, registers them and a
// gauge of the queues' depths read at each scrape.
func newMetrics(q *Queue, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		enqueuedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_jobs_enqueued_total", Help: "Jobs added to the queue, by type.",
		}, []string{"type"}),
		restoredTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_jobs_restored_total", Help: "Jobs of the journal that Redis had lost, added to the queue again, by type.",
		}, []string{"type"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_jobs_runs_total", Help: "Job runs by type and outcome (succeeded, retried, deferred by an open breaker, dead).",
		}, []string{"type", "outcome"}),
		breakers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_circuit_breaker_state", Help: "Circuit breaker per external API: 0 closed, 1 half-open, 2 open.",
		}, []string{"api"}),
	}
	if reg == nil {
		return m, nil
	}
	depth := depthCollector{q: q, desc: prometheus.NewDesc("switchboard_jobs_queue_depth",
		"Tasks in each job queue by state.", []string{"queue", "state"}, nil)}
	for _, c := range []prometheus.Collector{m.enqueuedTotal, m.restoredTotal, m.outcomes, m.breakers, depth} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) enqueued(typ string) { m.enqueuedTotal.WithLabelValues(typ).Inc() }

func (m *metrics) restored(typ string) { m.restoredTotal.WithLabelValues(typ).Inc() }

func (m *metrics) outcome(typ, outcome string) { m.outcomes.WithLabelValues(typ, outcome).Inc() }

func (m *metrics) breaker(api string, s gobreaker.State) {
	m.breakers.WithLabelValues(api).Set(float64(s))
}

// depthCollector reports each queue's tasks by state (pending, active,
// scheduled, retry, dead), read from Redis at scrape time.
type depthCollector struct {
	q    *Queue
	desc *prometheus.Desc
}

func (c depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c depthCollector) Collect(ch chan<- prometheus.Metric) {
	stats, err := c.q.Stats(context.Background())
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, s := range stats {
		for state, n := range map[string]int{"pending": s.Pending, "active": s.Active, "scheduled": s.Scheduled, "retry": s.Retry, "dead": s.Dead} {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), s.Queue, state)
		}
	}
}
