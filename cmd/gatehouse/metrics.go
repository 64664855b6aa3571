package main

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/directory"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/audit"
	"github.com/gatehouse/gatehouse/policy/metric"
	"github.com/gatehouse/gatehouse/policy/reval"
	"github.com/gatehouse/gatehouse/policy/revocation"
	"github.com/gatehouse/gatehouse/radius"
	"github.com/gatehouse/gatehouse/vpn"
)

// The collectors below read each package's plain Stats snapshot at scrape
// time and turn it into const metrics: the packages know nothing of
// Prometheus, and the hot paths only bump atomic counters. No label ever
// carries an identity, a certificate serial or a secret; rule names come from
// the configuration, CA names and CRL URLs too (bounded).

const ns = "gatehouse"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(ns+"_"+name, help, labels, nil)
}

// describeAll sends every desc of ds.
func describeAll(ch chan<- *prometheus.Desc, ds ...*prometheus.Desc) {
	for _, d := range ds {
		ch <- d
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// histogram sends a metric.Snapshot as a Prometheus histogram in seconds.
func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, s metric.Snapshot, labels ...string) {
	cum := s.Cumulative()
	b := make(map[float64]uint64, len(cum))
	for i, bound := range metric.Buckets {
		b[bound.Seconds()] = cum[i]
	}
	ch <- prometheus.MustNewConstHistogram(d, s.Count, s.Sum.Seconds(), b, labels...)
}

// sortedKeys gives a map's keys in order, for stable output.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// radiusCollector exports radius.Server.Stats.
type radiusCollector struct {
	stats                                               func() radius.Stats
	requests, responses, drops, cacheHits, acctRecords  *prometheus.Desc
	acctDups                                            *prometheus.Desc
	live, started, completed, evicted, expired, latency *prometheus.Desc
	tlsSessions, tlsResumptions                         *prometheus.Desc
	bytes, evictedMem, kernelDrops                      *prometheus.Desc
}

func newRadiusCollector(stats func() radius.Stats) *radiusCollector {
	return &radiusCollector{
		stats:       stats,
		requests:    desc("radius_requests_total", "Valid RADIUS requests received, by code.", "code"),
		responses:   desc("radius_responses_total", "RADIUS Access responses sent, by code (access_accept, access_reject, access_challenge).", "code"),
		drops:       desc("radius_dropped_total", "RADIUS datagrams dropped without an answer, by configured client (empty: none matched) and reason.", "client", "reason"),
		cacheHits:   desc("radius_reply_cache_hits_total", "Retransmissions answered from the reply cache."),
		acctRecords: desc("radius_accounting_records_total", "Accounting-Requests recorded."),
		acctDups:    desc("radius_accounting_duplicates_total", "Accounting-Requests answered but not recorded again: the same record was recorded already (resent on a new RadSec connection, from a new source port, with a new Identifier or Acct-Delay-Time), by configured client.", "client"),
		live:        desc("radius_eap_conversations", "EAP conversations in progress."),
		started:     desc("radius_eap_conversations_started_total", "EAP conversations started."),
		completed:   desc("radius_eap_conversations_completed_total", "EAP conversations ended with an Access-Accept or Access-Reject."),
		evicted:     desc("radius_eap_conversations_evicted_total", "EAP conversations pushed out of a full table (max_sessions) or by their client's max_half_open_per_client."),
		expired:     desc("radius_eap_conversations_expired_total", "EAP conversations ended by the idle or total timeout."),
		latency:     desc("radius_auth_duration_seconds", "Time from a conversation's first Access-Request to its Accept or Reject."),

		tlsSessions:    desc("radius_tls_sessions", "TLS sessions kept on the server for resumption (tls_session_cache)."),
		tlsResumptions: desc("radius_tls_resumptions_total", "EAP-TLS logins that resumed a TLS session (and were authorized again)."),
		bytes:          desc("radius_eap_conversation_bytes", "Memory held by EAP conversations (reassembly, unsent output, TLS handshakes), as counted against max_session_bytes."),
		evictedMem:     desc("radius_eap_conversations_evicted_memory_total", "EAP conversations evicted, biggest first, to stay within max_session_bytes."),
		kernelDrops:    desc("radius_receive_buffer_drops_total", "RADIUS datagrams the kernel dropped because a socket's receive buffer (receive_buffer) was full."),
	}
}

func (c *radiusCollector) Describe(ch chan<- *prometheus.Desc) {
	describeAll(ch, c.requests, c.responses, c.drops, c.cacheHits, c.acctRecords, c.acctDups, c.live, c.started, c.completed, c.evicted, c.expired, c.latency,
		c.tlsSessions, c.tlsResumptions, c.bytes, c.evictedMem, c.kernelDrops)
}

func (c *radiusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	for _, k := range sortedKeys(st.Requests) {
		counter(ch, c.requests, st.Requests[k], k)
	}
	counter(ch, c.responses, st.Accepts, "access_accept")
	counter(ch, c.responses, st.Rejects, "access_reject")
	counter(ch, c.responses, st.Challenges, "access_challenge")
	for _, r := range sortedKeys(st.Drops) {
		rest := st.Drops[r]
		for _, cl := range sortedKeys(st.DropsByClient) {
			if v := st.DropsByClient[cl][r]; v > 0 {
				counter(ch, c.drops, v, cl, r)
				rest -= min(v, rest)
			}
		}
		if rest > 0 {
			counter(ch, c.drops, rest, "", r)
		}
	}
	counter(ch, c.cacheHits, st.CacheHits)
	counter(ch, c.acctRecords, st.AccountingRecords)
	for _, cl := range sortedKeys(st.AccountingDuplicates) {
		counter(ch, c.acctDups, st.AccountingDuplicates[cl], cl)
	}
	gauge(ch, c.live, float64(st.SessionsLive))
	counter(ch, c.started, st.SessionsOpened)
	counter(ch, c.completed, st.AuthLatency.Count)
	counter(ch, c.evicted, st.SessionsEvicted)
	counter(ch, c.expired, st.SessionsExpired)
	histogram(ch, c.latency, st.AuthLatency)
	gauge(ch, c.tlsSessions, float64(st.TLSSessions))
	counter(ch, c.tlsResumptions, st.TLSResumptions)
	gauge(ch, c.bytes, float64(st.SessionBytes))
	counter(ch, c.evictedMem, st.SessionsEvictedMemory)
	counter(ch, c.kernelDrops, st.KernelDrops)
}

// directoryCollector exports directory.Directory.Stats and its query
// latency (observed into a metric.Histogram owned here).
type directoryCollector struct {
	stats                                         func() directory.Stats
	latency                                       *metric.Histogram
	ready                                         func() error
	hits, misses, stale, queries, errors, entries *prometheus.Desc
	duration, up                                  *prometheus.Desc
}

func newDirectoryCollector(stats func() directory.Stats, latency *metric.Histogram, ready func() error) *directoryCollector {
	return &directoryCollector{
		stats: stats, latency: latency, ready: ready,
		hits:     desc("directory_cache_hits_total", "Directory lookups answered from the cache."),
		misses:   desc("directory_cache_misses_total", "Directory lookups that went to the backend."),
		stale:    desc("directory_stale_answers_total", "Lookups answered from an expired cache entry during an outage (on_outage = serve_stale)."),
		queries:  desc("directory_queries_total", "Queries sent to the directory server (searches), or file evaluations."),
		errors:   desc("directory_errors_total", "Directory lookups that failed (outage, ambiguous entry, bad input)."),
		entries:  desc("directory_cache_entries", "Answers currently cached."),
		duration: desc("directory_query_duration_seconds", "Duration of a lookup sent to the backend (all its searches)."),
		up:       desc("directory_up", "1 if the directory can answer (connected, file present, or within the outage policy)."),
	}
}

func (c *directoryCollector) Describe(ch chan<- *prometheus.Desc) {
	describeAll(ch, c.hits, c.misses, c.stale, c.queries, c.errors, c.entries, c.duration, c.up)
}

func (c *directoryCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	counter(ch, c.hits, st.Hits)
	counter(ch, c.misses, st.Misses)
	counter(ch, c.stale, st.Stale)
	counter(ch, c.queries, st.Queries)
	counter(ch, c.errors, st.Errors)
	gauge(ch, c.entries, float64(st.Entries))
	histogram(ch, c.duration, c.latency.Snapshot())
	up := 1.0
	if c.ready() != nil {
		up = 0
	}
	gauge(ch, c.up, up)
}

// revocationCollector exports revocation.Checker.Stats: per CRL source
// (labels: the CA's subject and the URL, both from the configuration), and
// the CRLs loaded from trust.crl files (url label "file:///path").
type revocationCollector struct {
	stats                                        func() revocation.Stats
	files                                        func() []policy.CRLFile
	now                                          func() time.Time
	age, nextUpdate, entries, failures           *prometheus.Desc
	ocspExchanges, ocspCacheHits, crlsConfigured *prometheus.Desc
}

func newRevocationCollector(stats func() revocation.Stats, files func() []policy.CRLFile, now func() time.Time) *revocationCollector {
	return &revocationCollector{
		stats: stats, files: files, now: now,
		age:            desc("crl_age_seconds", "Age of the CRL in use, from a URL or a trust.crl file (url=\"file://…\"): now − thisUpdate; absent until one is loaded.", "ca", "url"),
		nextUpdate:     desc("crl_next_update_timestamp_seconds", "nextUpdate of the CRL in use (URL or file), Unix time; alert well before it passes.", "ca", "url"),
		entries:        desc("crl_entries", "Revoked certificates listed in the CRL in use.", "ca", "url"),
		failures:       desc("crl_fetch_failures", "Consecutive failed fetches of a CRL URL (0 = last fetch good).", "ca", "url"),
		crlsConfigured: desc("crl_sources", "CRL URLs configured in [[trust.ca_source]]."),
		ocspExchanges:  desc("ocsp_exchanges_total", "OCSP questions sent to a pinned responder."),
		ocspCacheHits:  desc("ocsp_cache_hits_total", "OCSP questions answered from the cache."),
	}
}

func (c *revocationCollector) Describe(ch chan<- *prometheus.Desc) {
	describeAll(ch, c.age, c.nextUpdate, c.entries, c.failures, c.crlsConfigured, c.ocspExchanges, c.ocspCacheHits)
}

func (c *revocationCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	now := c.now()
	gauge(ch, c.crlsConfigured, float64(len(st.CRLs)))
	for _, s := range st.CRLs {
		gauge(ch, c.failures, float64(s.Failures), s.CA, s.URL)
		if s.ThisUpdate.IsZero() {
			continue
		}
		gauge(ch, c.age, now.Sub(s.ThisUpdate).Seconds(), s.CA, s.URL)
		if !s.NextUpdate.IsZero() {
			gauge(ch, c.nextUpdate, float64(s.NextUpdate.Unix()), s.CA, s.URL)
		}
		gauge(ch, c.entries, float64(s.Entries), s.CA, s.URL)
	}
	seen := map[[2]string]bool{} // two spellings of one file's path
	for _, f := range c.files() {
		u := crlFileLabel(f.File)
		if k := [2]string{f.CA, u}; seen[k] {
			continue
		} else {
			seen[k] = true
		}
		gauge(ch, c.age, now.Sub(f.ThisUpdate).Seconds(), f.CA, u)
		if !f.NextUpdate.IsZero() {
			gauge(ch, c.nextUpdate, float64(f.NextUpdate.Unix()), f.CA, u)
		}
		gauge(ch, c.entries, float64(f.Entries), f.CA, u)
	}
	counter(ch, c.ocspExchanges, st.OCSPExchanges)
	counter(ch, c.ocspCacheHits, st.OCSPCacheHits)
}

// vpnSource is what the VPN collector reads; *vpn.Server satisfies it.
type vpnSource interface {
	Stats() vpn.Stats
	DeviceStats() (vpn.DeviceStats, error)
	Enrollments() map[string]uint64
	EnrollLatency() metric.Snapshot
}

// vpnCollector exports the concentrator's registry, filter and device
// counters.
type vpnCollector struct {
	src                                   vpnSource
	now                                   func() time.Time
	peers, leases, poolSize, flows, drops *prometheus.Desc
	rx, tx, connected, handshakeAge       *prometheus.Desc
	enrollments, enrollLatency            *prometheus.Desc
	suspended, quarantined                *prometheus.Desc
}

func newVPNCollector(src vpnSource, now func() time.Time) *vpnCollector {
	return &vpnCollector{
		src: src, now: now,
		peers:         desc("vpn_peers", "Enrolled certificates (WireGuard peers)."),
		leases:        desc("vpn_leases", "Tunnel addresses leased from the pool."),
		poolSize:      desc("vpn_pool_size", "Tunnel addresses clients can lease."),
		flows:         desc("vpn_filter_flows", "Entries in the packet filter's connection tracker."),
		drops:         desc("vpn_filter_dropped_total", "Packets dropped by the packet filter, by reason.", "reason"),
		rx:            desc("vpn_receive_bytes_total", "Bytes received from all peers (WireGuard device)."),
		tx:            desc("vpn_transmit_bytes_total", "Bytes sent to all peers (WireGuard device)."),
		connected:     desc("vpn_peers_connected", "Peers with a handshake in the last 3 minutes."),
		handshakeAge:  desc("vpn_latest_handshake_age_seconds", "Seconds since the most recent handshake of any peer; absent if none."),
		enrollments:   desc("vpn_enrollments_total", "Enrollment requests by outcome (allowed, denied, failed).", "outcome"),
		enrollLatency: desc("vpn_enroll_duration_seconds", "Duration of enrollment requests."),
		suspended:     desc("vpn_peers_suspended", "Peers suspended by re-validation (off the device, record and lease kept)."),
		quarantined:   desc("vpn_records_quarantined_total", "Stored peer records quarantined (unreadable or conflicting) since start."),
	}
}

func (c *vpnCollector) Describe(ch chan<- *prometheus.Desc) {
	describeAll(ch, c.peers, c.leases, c.poolSize, c.flows, c.drops, c.rx, c.tx, c.connected, c.handshakeAge, c.enrollments, c.enrollLatency,
		c.suspended, c.quarantined)
}

func (c *vpnCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	gauge(ch, c.peers, float64(st.Peers))
	gauge(ch, c.leases, float64(st.Leases))
	gauge(ch, c.poolSize, float64(st.PoolSize))
	gauge(ch, c.flows, float64(st.Flows))
	gauge(ch, c.suspended, float64(st.Suspended))
	counter(ch, c.quarantined, st.Quarantined)
	for _, k := range sortedKeys(st.Drops) {
		counter(ch, c.drops, st.Drops[k], k)
	}
	if ds, err := c.src.DeviceStats(); err == nil {
		counter(ch, c.rx, ds.RxBytes)
		counter(ch, c.tx, ds.TxBytes)
		gauge(ch, c.connected, float64(ds.Handshaked))
		if !ds.LatestHandshake.IsZero() {
			gauge(ch, c.handshakeAge, c.now().Sub(ds.LatestHandshake).Seconds())
		}
	}
	en := c.src.Enrollments()
	for _, k := range sortedKeys(en) {
		counter(ch, c.enrollments, en[k], k)
	}
	histogram(ch, c.enrollLatency, c.src.EnrollLatency())
}

// heldCollector exports the mass-cut guard's holds.
type heldCollector struct {
	held  func() map[policy.Door]reval.Held
	doors []policy.Door
	desc  *prometheus.Desc
}

func newHeldCollector(held func() map[policy.Door]reval.Held, doors ...policy.Door) *heldCollector {
	return &heldCollector{held: held, doors: doors,
		desc: desc("revalidate_held_cuts", "Cuts for policy reasons held by the mass-cut guard, waiting for `gatehouse reload --confirm-cut` (0 = none), by door.", "door")}
}

func (c *heldCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *heldCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.held()
	for _, d := range c.doors {
		gauge(ch, c.desc, float64(h[d].Count), d.String())
	}
}

// decisionKey is one (door, event, rule, code) combination.
type decisionKey struct{ door, event, rule, code string }

// decisionCounter is a policy.Auditor counting decisions by door, event,
// rule and code, then passing the event on (to the audit writer, if any).
// Rule names come from the configuration, so the label set is bounded.
type decisionCounter struct {
	next policy.Auditor // nil = none

	mu     sync.Mutex // guards counts
	counts map[decisionKey]uint64

	desc *prometheus.Desc
}

func newDecisionCounter(next policy.Auditor) *decisionCounter {
	return &decisionCounter{
		next:   next,
		counts: make(map[decisionKey]uint64),
		desc:   desc("decisions_total", "Access decisions by door (wifi, vpn), event (authenticate, enroll, revalidate), rule (\"\" = none matched) and code (allowed or the deny reason).", "door", "event", "rule", "code"),
	}
}

func (c *decisionCounter) Audit(ev policy.AuditEvent) {
	code := ev.Decision.Code.String()
	if !ev.Allowed && ev.Decision.Code == policy.CodeAllowed {
		code = "error" // allowed by policy, refused by the door (e.g. no free address)
	}
	k := decisionKey{ev.Door, ev.Event, ev.Decision.Rule, code}
	c.mu.Lock()
	c.counts[k]++
	c.mu.Unlock()
	if c.next != nil {
		c.next.Audit(ev)
	}
}

func (c *decisionCounter) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *decisionCounter) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	snap := make(map[decisionKey]uint64, len(c.counts))
	for k, v := range c.counts {
		snap[k] = v
	}
	c.mu.Unlock()
	for k, v := range snap {
		counter(ch, c.desc, v, k.door, k.event, k.rule, k.code)
	}
}

// auditCollector exports the audit writer's counters.
type auditCollector struct {
	stats                     func() audit.Stats
	written, dropped, errs, q *prometheus.Desc
}

func newAuditCollector(stats func() audit.Stats) *auditCollector {
	return &auditCollector{
		stats:   stats,
		written: desc("audit_events_written_total", "Audit lines written (to a file: and synced)."),
		dropped: desc("audit_events_dropped_total", "Audit events not written: queue full (the door never waits), or a failed write or sync (disk full, I/O error)."),
		errs:    desc("audit_write_errors_total", "Audit write, sync or rotation failures."),
		q:       desc("audit_queue_length", "Audit events waiting to be written."),
	}
}

func (c *auditCollector) Describe(ch chan<- *prometheus.Desc) {
	describeAll(ch, c.written, c.dropped, c.errs, c.q)
}

func (c *auditCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	counter(ch, c.written, st.Written)
	counter(ch, c.dropped, st.Dropped)
	counter(ch, c.errs, st.Errors)
	gauge(ch, c.q, float64(st.Queued))
}

// readyCollector exports each readiness check as a gauge.
type readyCollector struct {
	checks func() map[string]error
	desc   *prometheus.Desc
}

func (c *readyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *readyCollector) Collect(ch chan<- prometheus.Metric) {
	res := c.checks()
	for _, k := range sortedKeys(res) {
		v := 1.0
		if res[k] != nil && !isDegraded(res[k]) {
			v = 0
		}
		gauge(ch, c.desc, v, k)
	}
}
