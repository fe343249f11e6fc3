package wire

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts requests by command and protocol. One Metrics may be shared
// by the RESP server and the HTTP handler; nil disables counting.
type Metrics struct {
	requests    *prometheus.CounterVec
	failures    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	connections prometheus.Gauge
	refused     *prometheus.CounterVec

	mu   sync.Mutex
	byOp map[string]*opMetrics
}

type opMetrics struct {
	requests prometheus.Counter
	failures prometheus.Counter
	latency  prometheus.Observer
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rumor_requests_total", Help: "Requests served, by protocol and command.",
		}, []string{"protocol", "command"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rumor_request_errors_total", Help: "Requests answered with an error, by protocol and command.",
		}, []string{"protocol", "command"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rumor_request_duration_seconds",
			Help:    "Time from a request's arrival to its reply, by protocol and command.",
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 17), // 25µs .. 1.6s
		}, []string{"protocol", "command"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rumor_client_connections", Help: "Open RESP client connections.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rumor_client_disconnects_total", Help: "RESP connections closed by the server, by reason (protocol error, idle timeout, max clients).",
		}, []string{"reason"}),
		byOp: map[string]*opMetrics{},
	}
	reg.MustRegister(m.requests, m.failures, m.latency, m.connections, m.refused)
	return m
}

// op returns the resolved metrics of one command, so the request path does
// no label lookups after the first request.
func (m *Metrics) op(protocol, command string) *opMetrics {
	if m == nil {
		return nil
	}
	k := protocol + " " + command
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.byOp[k]
	if o == nil {
		o = &opMetrics{
			requests: m.requests.WithLabelValues(protocol, command),
			failures: m.failures.WithLabelValues(protocol, command),
			latency:  m.latency.WithLabelValues(protocol, command),
		}
		m.byOp[k] = o
	}
	return o
}

func (m *Metrics) disconnect(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) conns(delta float64) {
	if m != nil {
		m.connections.Add(delta)
	}
}
