package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/radius"
	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/store/spool"
	"github.com/gatehouse/gatehouse/store/wifi"
)

// The Wi-Fi half of [store] backend = "postgres": the RADIUS server's
// session records and (by [radius] accounting) its accounting records go
// to a durable spool in state_dir/spool/wifi, which a replayer pushes to
// PostgreSQL in order, in batches, idempotently (see package store/spool).
// Logins and accounting never wait on the database.

// wifiShared is the spool and its replayer.
type wifiShared struct {
	db    *postgres.DB
	spool *spool.Spool
	store wifi.Store
	audit *storeAuditor // [store] audit = true, else nil; set by newOps
	log   *slog.Logger
	// maintain: schema migration retries and the purges (ended sessions,
	// accounting records, audit events).
	maintain postgres.MaintainConfig
}

// auditor returns the auditor that also spools events for audit_events
// ([store] audit = true), or next.
func (w *wifiShared) auditor(next policy.Auditor, enabled bool) policy.Auditor {
	if w == nil || !enabled {
		return next
	}
	w.audit = newStoreAuditor(next, w.spool, w.log)
	return w.audit
}

// accountingMode is [radius] accounting, defaulted by the store backend.
func accountingMode(c *fileConfig) string {
	if c.Radius.Accounting != "" {
		return c.Radius.Accounting
	}
	if c.Store.Backend == "postgres" {
		return radius.AccountingStore
	}
	return radius.AccountingFile
}

// buildWiFiShared links the RADIUS server to the shared store; nothing
// for backend = "file".
func buildWiFiShared(l *loaded, s *servers, logger *slog.Logger) error {
	c := &l.cfg
	if c.Store.Backend != "postgres" {
		return nil
	}
	log := logger.With("component", "store")
	db, err := s.openSharedDB(l, logger)
	if err != nil {
		return err
	}
	sp, err := spool.Open(spool.Config{Dir: filepath.Join(c.Server.StateDir, "spool", "store"), Node: c.Store.Node}, log)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	w := &wifiShared{db: db, spool: sp, store: db.WiFi(), log: log, maintain: c.Store.maintainConfig()}
	s.radius.SetShared(wifi.Node{Spool: sp, Store: w.store})
	s.wifi, s.auditStore = w, c.Store.Audit
	return nil
}

// Run replays the spool until ctx is done, then closes it. Alongside, it
// keeps the schema current (retrying with backoff while the database is
// unreachable: the advisory lock makes that safe on every node at once;
// the replayer retries meanwhile, the spool keeping the records) and purges
// ended sessions, accounting records and audit events older than [store]
// ended_session_retention, accounting_retention and audit_retention.
func (w *wifiShared) Run(ctx context.Context) error {
	maintDone := make(chan struct{})
	go func() { defer close(maintDone); w.db.Maintain(ctx, w.maintain) }()
	var auditDone chan struct{}
	if w.audit != nil {
		auditDone = make(chan struct{})
		go func() { defer close(auditDone); w.audit.run(ctx) }()
	}
	err := w.spool.Run(ctx, w.store)
	if auditDone != nil {
		<-auditDone
	}
	<-maintDone
	if cerr := w.spool.Close(); err == nil {
		err = cerr
	}
	return err
}

// spoolStaleAfter: records older than this in the spool make /readyz say
// "degraded" (the node serves; PostgreSQL lags or is down).
const spoolStaleAfter = time.Minute

// Ready reports the spool: an error (degraded, never unready: logins and
// accounting go on) while the database does not take the records.
func (w *wifiShared) Ready() error {
	st := w.spool.Stats()
	if st.Failing {
		return &degradedError{fmt.Sprintf("%d Wi-Fi/accounting records spooled locally, PostgreSQL not taking them: %s", st.Records, st.LastError)}
	}
	if !st.Oldest.IsZero() && time.Since(st.Oldest) > spoolStaleAfter {
		return &degradedError{fmt.Sprintf("%d Wi-Fi/accounting records spooled locally, the oldest %s ago", st.Records, time.Since(st.Oldest).Round(time.Second))}
	}
	return nil
}

// wifiStoreCollector exports the spool and the cross-node session work.
type wifiStoreCollector struct {
	spool                               func() spool.Stats
	shared                              func() radius.SharedStats
	records, oldest, replayed, failing  *prometheus.Desc
	spooled, lost, adopted, adoptMisses *prometheus.Desc
	auditDropped                        *prometheus.Desc
	audit                               *storeAuditor
}

func newWiFiStoreCollector(w *wifiShared, r *radius.Server) *wifiStoreCollector {
	return &wifiStoreCollector{
		spool:        w.spool.Stats,
		shared:       r.SharedStats,
		records:      desc("store_spool_records", "Records in the local spool not yet committed to PostgreSQL."),
		oldest:       desc("store_spool_oldest_seconds", "Age of the oldest record in the local spool; 0 when empty."),
		replayed:     desc("store_spool_replayed_total", "Records committed to PostgreSQL from the local spool."),
		failing:      desc("store_spool_failing", "1 while PostgreSQL does not take the spooled records."),
		spooled:      desc("radius_shared_sessions_spooled_total", "Wi-Fi session records written to the spool."),
		lost:         desc("radius_shared_sessions_lost_total", "Wi-Fi session records that could not be spooled (the node keeps the session)."),
		adopted:      desc("radius_shared_sessions_adopted_total", "Wi-Fi sessions of other nodes adopted from accounting received here."),
		adoptMisses:  desc("radius_shared_adopt_misses_total", "Accounting for another node's session whose record was not found (or PostgreSQL unreachable)."),
		auditDropped: desc("store_audit_dropped_total", "Audit events not spooled for audit_events (queue full or spool failing)."),
		audit:        w.audit,
	}
}

func (c *wifiStoreCollector) Describe(ch chan<- *prometheus.Desc) {
	describeAll(ch, c.records, c.oldest, c.replayed, c.failing, c.spooled, c.lost, c.adopted, c.adoptMisses, c.auditDropped)
}

func (c *wifiStoreCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.spool()
	gauge(ch, c.records, float64(st.Records))
	age := 0.0
	if !st.Oldest.IsZero() {
		age = time.Since(st.Oldest).Seconds()
	}
	gauge(ch, c.oldest, age)
	counter(ch, c.replayed, st.Replayed)
	failing := 0.0
	if st.Failing {
		failing = 1
	}
	gauge(ch, c.failing, failing)
	sh := c.shared()
	counter(ch, c.spooled, sh.SessionsSpooled)
	counter(ch, c.lost, sh.SessionsLost)
	counter(ch, c.adopted, sh.Adopted)
	counter(ch, c.adoptMisses, sh.AdoptMisses)
	if c.audit != nil {
		counter(ch, c.auditDropped, c.audit.dropped.Load())
	}
}

// checkWiFiStore validates [radius] accounting and [store] audit against
// [store] backend; errors name the key and the file.
func checkWiFiStore(c *fileConfig, file string) []string {
	if c.Store.Audit && c.Store.Backend != "postgres" {
		return []string{fmt.Sprintf("%s: store.audit: only for backend = \"postgres\" (the file backend has the audit trail)", file)}
	}
	switch c.Radius.Accounting {
	case "", radius.AccountingFile:
	case radius.AccountingStore, radius.AccountingBoth:
		if c.Store.Backend != "postgres" {
			return []string{fmt.Sprintf("%s: radius.accounting: %q needs [store] backend = \"postgres\"", file, c.Radius.Accounting)}
		}
	default:
		return []string{fmt.Sprintf("%s: radius.accounting: %q: must be file, store or both", file, c.Radius.Accounting)}
	}
	return nil
}
