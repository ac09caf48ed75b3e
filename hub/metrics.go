package hub

import "github.com/prometheus/client_golang/prometheus"

// metrics are the hub's Prometheus collectors.
type metrics struct {
	Connections prometheus.Gauge
	Delivered   prometheus.Counter     // messages handed to connection queues
	FramesOut   prometheus.Counter     // WebSocket frames written (each may batch several objects)
	Dropped     *prometheus.CounterVec // by reason: slow_consumer, ephemeral
	RateLimited prometheus.Counter
	GapFetches  prometheus.Counter
	// DeliveryLatency is, per message and connection, the time from the
	// message being queued for the connection (when it is next in order on
	// this node) to the end of the write that carried it.
	DeliveryLatency prometheus.Histogram
	QueuedBytes     prometheus.Gauge // bytes waiting in every connection's send queue
	// PresenceCleanups counts the closed connections whose presence entry
	// waits for Redis to be removed.
	PresenceCleanups prometheus.Gauge
}

// newMetrics makes the hub's collectors and registers them with reg; a nil
// reg leaves them unregistered.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_ws_connections", Help: "Open authenticated WebSocket connections."}),
		Delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_messages_out_total", Help: "Messages handed to connections for delivery."}),
		FramesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_ws_frames_out_total", Help: "WebSocket frames written."}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_ws_dropped_total", Help: "Connections closed or events dropped, by reason."}, []string{"reason"}),
		RateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_rate_limited_total", Help: "Requests refused by a per-connection rate limit."}),
		GapFetches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_gap_fetches_total", Help: "Out-of-order gaps filled from Postgres."}),
		DeliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchboard_delivery_seconds",
			Help:    "Per message and connection: from being queued for the connection to the end of its write.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .075, .1, .25, .5, 1, 2.5, 5},
		}),
		QueuedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_send_queue_bytes", Help: "Bytes waiting in the send queues of all connections."}),
		PresenceCleanups: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_presence_cleanups_pending", Help: "Closed connections whose presence entry waits for Redis to be removed."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Connections, m.Delivered, m.FramesOut, m.Dropped, m.RateLimited,
			m.GapFetches, m.DeliveryLatency, m.QueuedBytes, m.PresenceCleanups} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
