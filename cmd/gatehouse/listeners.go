package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/netlimit"
)

// listenerStats returns the connection counters of the capped TCP
// listeners, by name: "metrics" always, "enroll" when the VPN is on. A
// listener not yet listening reports zeros.
func (o *ops) listenerStats(s *servers) func() map[string]netlimit.Stats {
	return func() map[string]netlimit.Stats {
		m := map[string]netlimit.Stats{"metrics": o.metricsLn.Load().Stats()}
		if s.vpn != nil {
			m["enroll"] = s.vpn.EnrollListener()
		}
		return m
	}
}

// listenerCollector exports the connection caps' counters.
type listenerCollector struct {
	stats          func() map[string]netlimit.Stats
	open, rejected *prometheus.Desc
}

func newListenerCollector(stats func() map[string]netlimit.Stats) *listenerCollector {
	return &listenerCollector{
		stats:    stats,
		open:     desc("listener_connections", "TCP connections open now, by listener (enroll, metrics).", "listener"),
		rejected: desc("listener_rejected_total", "TCP connections closed at accept for exceeding a connection cap (total or per source IP), by listener.", "listener"),
	}
}

func (c *listenerCollector) Describe(ch chan<- *prometheus.Desc) { describeAll(ch, c.open, c.rejected) }

func (c *listenerCollector) Collect(ch chan<- prometheus.Metric) {
	for name, st := range c.stats() {
		gauge(ch, c.open, float64(st.Open), name)
		counter(ch, c.rejected, st.Rejected, name)
	}
}
