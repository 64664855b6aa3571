package main

import (
	"bytes"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/radius"
)

// radsecPaths resolves the RadSec file keys against the config directory.
func radsecPaths(dir string, rc *radius.Config) {
	rel(dir, &rc.RadSecCert)
	rel(dir, &rc.RadSecKey)
	for i := range rc.RadSecClients {
		rel(dir, &rc.RadSecClients[i].CAFile)
	}
}

// radsecAnchorsApart refuses a radius.radsec_client ca_file holding a CA
// of trust.client_ca or trust.intermediates: access points are identified
// by a trust anchor of their own, so an employee's certificate can never
// open a RadSec connection.
func radsecAnchorsApart(file string, rc *radius.Config, t *policy.TrustConfig) []string {
	if len(rc.RadSecClients) == 0 {
		return nil
	}
	var employee [][]byte
	for _, f := range append(append([]string(nil), t.ClientCA...), t.Intermediates...) {
		certs, err := policy.ReadCertificates(f)
		if err != nil {
			continue // reported by policy.Compile
		}
		for _, c := range certs {
			employee = append(employee, c.Raw)
		}
	}
	var errs []string
	for i, c := range rc.RadSecClients {
		if c.CAFile == "" {
			continue // reported by radius
		}
		certs, err := policy.ReadCertificates(c.CAFile)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: radius.radsec_client[%d] %q: ca_file: %v", file, i, c.Name, err))
			continue
		}
		for _, ca := range certs {
			for _, e := range employee {
				if bytes.Equal(ca.Raw, e) {
					errs = append(errs, fmt.Sprintf("%s: radius.radsec_client[%d] %q: ca_file %s holds %q, an employee CA (trust.client_ca/intermediates): access points need a CA of their own",
						file, i, c.Name, c.CAFile, ca.Subject.String()))
				}
			}
		}
	}
	return errs
}

// radsecCollector exports radius.Server.RadSecStats.
type radsecCollector struct {
	stats             func() radius.RadSecStats
	open, conns, ends *prometheus.Desc
}

func newRadSecCollector(stats func() radius.RadSecStats) *radsecCollector {
	return &radsecCollector{
		stats: stats,
		open:  desc("radius_radsec_connections", "RadSec connections open now, TLS handshakes included."),
		conns: desc("radius_radsec_connections_total", "RadSec connections by outcome: accepted (certificate matched a radsec_client), refused (handshake failed: untrusted or unmatched certificate, TLS < 1.2, timeout), over_limit (radsec_max_conns, radsec_max_conns_per_ip or a client's max_conns).", "result"),
		ends:  desc("radius_radsec_closed_total", "RadSec connections closed by gatehouse, by reason: framing (Length outside 20..4096, truncated packet), idle (radsec_idle_timeout), slow_peer (replies not read).", "reason"),
	}
}

func (c *radsecCollector) Describe(ch chan<- *prometheus.Desc) {
	describeAll(ch, c.open, c.conns, c.ends)
}

func (c *radsecCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	gauge(ch, c.open, float64(st.Open))
	counter(ch, c.conns, st.Accepted, "accepted")
	counter(ch, c.conns, st.Refused, "refused")
	counter(ch, c.conns, st.OverLimit, "over_limit")
	counter(ch, c.ends, st.FramingError, "framing")
	counter(ch, c.ends, st.IdleClosed, "idle")
	counter(ch, c.ends, st.SlowPeer, "slow_peer")
}
