package jobs

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// Metrics are the job queue's Prometheus series.
type Metrics struct {
	Enqueued *prometheus.CounterVec // by type
	Outcomes *prometheus.CounterVec // by type and outcome: succeeded, retried, deferred, dead
	Breakers *prometheus.GaugeVec   // by api: 0 closed, 1 half-open, 2 open
}

// NewMetrics registers the job series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_jobs_enqueued_total", Help: "Jobs added to the queue, by type.",
		}, []string{"type"}),
		Outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_jobs_runs_total", Help: "Job runs by type and outcome (succeeded, retried, deferred by an open breaker, dead).",
		}, []string{"type", "outcome"}),
		Breakers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_circuit_breaker_state", Help: "Circuit breaker per external API: 0 closed, 1 half-open, 2 open.",
		}, []string{"api"}),
	}
	reg.MustRegister(m.Enqueued, m.Outcomes, m.Breakers)
	return m
}

func (m *Metrics) enqueued(typ string) {
	if m != nil {
		m.Enqueued.WithLabelValues(typ).Inc()
	}
}

func (m *Metrics) outcome(typ, outcome string) {
	if m != nil {
		m.Outcomes.WithLabelValues(typ, outcome).Inc()
	}
}

func (m *Metrics) breaker(api string, s gobreaker.State) {
	if m != nil {
		m.Breakers.WithLabelValues(api).Set(float64(s))
	}
}

// depthCollector reports queue depth by state at scrape time.
type depthCollector struct {
	q    *Queue
	desc *prometheus.Desc
}

// RegisterDepth adds a gauge of each queue's tasks by state (pending,
// active, scheduled, retry, dead) to reg, read from Redis at each scrape.
func (q *Queue) RegisterDepth(reg prometheus.Registerer) error {
	return reg.Register(depthCollector{q: q, desc: prometheus.NewDesc("switchboard_jobs_queue_depth",
		"Tasks in each job queue by state.", []string{"queue", "state"}, nil)})
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
