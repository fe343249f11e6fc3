package node

import "github.com/prometheus/client_golang/prometheus"

// coordCollector exports a Coordinator's Stats in Prometheus form. Hints
// pending per target are the store's (rumor_store_hints).
type coordCollector struct{ c *Coordinator }

var (
	descReadRepairs    = prometheus.NewDesc("rumor_read_repairs_total", "Read repairs sent: a read's merged object to a replica whose answer it dominated.", nil, nil)
	descRepairsSkipped = prometheus.NewDesc("rumor_read_repairs_skipped_total", "Read repairs skipped because too many were in flight.", nil, nil)
	descHintedWrites   = prometheus.NewDesc("rumor_hinted_writes_total", "Write copies acknowledged by a stand-in holding them with a hint.", nil, nil)
	descHintsDelivered = prometheus.NewDesc("rumor_hints_delivered_total", "Hinted objects delivered to their replica and deleted.", nil, nil)
	descHintsDropped   = prometheus.NewDesc("rumor_hints_dropped_total", "Hinted copies refused because hint storage was full.", nil, nil)
	descHintFailures   = prometheus.NewDesc("rumor_hint_delivery_failures_total", "Hint deliveries that failed and backed off.", nil, nil)
	descPeerReachable  = prometheus.NewDesc("rumor_peer_reachable", "1 if requests count on the peer (gossip alive, breaker closed).", []string{"peer"}, nil)
	descPeerBreaker    = prometheus.NewDesc("rumor_peer_breaker_state", "The peer's circuit breaker: 0 closed, 1 open, 2 half-open.", []string{"peer"}, nil)
	descBreakerOpened  = prometheus.NewDesc("rumor_peer_breaker_opened_total", "Times the peer's circuit breaker opened.", []string{"peer"}, nil)
)

func (cc coordCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReadRepairs, descRepairsSkipped, descHintedWrites, descHintsDelivered,
		descHintsDropped, descHintFailures, descPeerReachable, descPeerBreaker, descBreakerOpened} {
		ch <- d
	}
}

func (cc coordCollector) Collect(ch chan<- prometheus.Metric) {
	s := cc.c.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descReadRepairs, s.ReadRepairs)
	counter(descRepairsSkipped, s.ReadRepairsSkipped)
	counter(descHintedWrites, s.HintedWrites)
	counter(descHintsDelivered, s.HintsDelivered)
	counter(descHintsDropped, s.HintsDropped)
	counter(descHintFailures, s.HintDeliveryFailures)
	states := map[string]float64{"closed": 0, "open": 1, "half-open": 2}
	for _, p := range s.Peers {
		ch <- prometheus.MustNewConstMetric(descPeerReachable, prometheus.GaugeValue, float64(b2i(p.Reachable)), p.Name)
		ch <- prometheus.MustNewConstMetric(descPeerBreaker, prometheus.GaugeValue, states[p.Breaker], p.Name)
		counter(descBreakerOpened, p.BreakerOpened, p.Name)
	}
}

// faultsCollector exports the faults injected on a node.
type faultsCollector struct{ n *Node }

var (
	descFaultsEnabled = prometheus.NewDesc("rumor_faults_enabled", "1 if the node was started with --allow-faults.", nil, nil)
	descFaultBlocked  = prometheus.NewDesc("rumor_fault_blocked", "1 for each node whose traffic with this one is black-holed.", []string{"peer"}, nil)
	descFaultDelay    = prometheus.NewDesc("rumor_fault_delay_seconds", "Delay added to traffic with a node (peer \"*\": with every node).", []string{"peer"}, nil)
)

func (fc faultsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descFaultsEnabled
	ch <- descFaultBlocked
	ch <- descFaultDelay
}

func (fc faultsCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descFaultsEnabled, prometheus.GaugeValue, float64(b2i(fc.n.cfg.AllowFaults)))
	s := fc.n.faults.State()
	for _, b := range s.Blocked {
		ch <- prometheus.MustNewConstMetric(descFaultBlocked, prometheus.GaugeValue, 1, b)
	}
	for peer, d := range s.Delays {
		ch <- prometheus.MustNewConstMetric(descFaultDelay, prometheus.GaugeValue, d.Seconds(), peer)
	}
}
