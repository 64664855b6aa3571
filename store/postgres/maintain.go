package postgres

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// MaintainConfig says what Maintain does. The zero value migrates (with
// retries), purges nothing, checks hourly.
type MaintainConfig struct {
	// EndedSessionRetention is how long an ended Wi-Fi session's row is
	// kept (counted from its last update); 0 keeps them forever.
	EndedSessionRetention time.Duration
	// AccountingRetention is how long an accounting record
	// (radius_accounting) is kept, counted from received_at; 0 keeps them
	// forever. It must be far longer than any outage a spool rides out: a
	// record resent after its copy was purged is stored again.
	AccountingRetention time.Duration
	// AuditRetention is how long an audit event (audit_events) is kept,
	// counted from its time (at); 0 keeps them forever.
	AuditRetention time.Duration
	// PurgeEvery is the period of the purge (default 1h; the first runs
	// once the schema is current).
	PurgeEvery time.Duration
	// PurgeBatch bounds the rows one DELETE removes (default 1000), so a
	// purge never holds many row locks for long.
	PurgeBatch int
	// RetryMax caps the backoff between two migration attempts (default
	// 30s; the first retry is after 250ms).
	RetryMax time.Duration
}

// defaultPurgeBatch is MaintainConfig.PurgeBatch's default.
const defaultPurgeBatch = 1000

// Maintain keeps this database current until ctx is done, on any node
// (everything it does is idempotent and safe on every node at once): it
// applies the binary's pending migrations, retrying with backoff while the
// server cannot be reached (a node that starts before its database does
// not wait for its next start to get a schema: its spool replays as soon
// as the schema is there), then every PurgeEvery purges the ended Wi-Fi
// sessions, accounting records and audit events older than their
// retentions (a kind whose retention is 0 is kept). A kind whose purge
// fails is logged and retried at the next round; the others go on. It
// returns nil when ctx is done.
func (db *DB) Maintain(ctx context.Context, cfg MaintainConfig) error {
	if cfg.PurgeEvery <= 0 {
		cfg.PurgeEvery = time.Hour
	}
	if cfg.PurgeBatch <= 0 {
		cfg.PurgeBatch = defaultPurgeBatch
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 30 * time.Second
	}
	kinds := db.purges(cfg)
	if !db.migrateRetrying(ctx, cfg.RetryMax) || len(kinds) == 0 {
		return nil
	}
	for {
		for _, k := range kinds {
			n, err := k.run(ctx, time.Now().Add(-k.retention), cfg.PurgeBatch)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				db.logger().Warn("postgres: purge failed; retried later", "table", k.table, "key", k.key,
					"retention", k.retention.String(), "purged", n, "err", err)
			case n > 0:
				db.logger().Info("postgres: "+k.what+" purged", "table", k.table, "rows", n, "retention", k.retention.String())
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(cfg.PurgeEvery):
		}
	}
}

// purgeKind is one kind of row Maintain purges.
type purgeKind struct {
	what, table, key string // for the log: what, its table, the [store] key
	retention        time.Duration
	run              func(ctx context.Context, before time.Time, batch int) (int64, error)
}

// purges lists the kinds cfg purges (a retention of 0 keeps its kind).
func (db *DB) purges(cfg MaintainConfig) []purgeKind {
	w := db.WiFi()
	var ks []purgeKind
	for _, k := range []purgeKind{
		{"ended Wi-Fi sessions", "wifi_sessions", "store.ended_session_retention", cfg.EndedSessionRetention, w.PurgeEnded},
		{"accounting records", "radius_accounting", "store.accounting_retention", cfg.AccountingRetention, w.PurgeAccounting},
		{"audit events", "audit_events", "store.audit_retention", cfg.AuditRetention, w.PurgeAudit},
	} {
		if k.retention > 0 {
			ks = append(ks, k)
		}
	}
	return ks
}

// migrateRetrying runs Migrate until it succeeds (true) or ctx is done
// (false). The first failure and every change of error are logged.
func (db *DB) migrateRetrying(ctx context.Context, retryMax time.Duration) bool {
	backoff := 250 * time.Millisecond
	var last string
	for failures := 0; ; failures++ {
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ms, err := db.Migrate(mctx)
		cancel()
		if err == nil {
			if failures > 0 {
				db.logger().Info("postgres: schema current after the database answered", "applied", len(ms), "attempts", failures+1)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if msg := err.Error(); msg != last {
			if errors.Is(err, ErrIncompatibleSchema) {
				db.logger().Error("postgres: the database schema is incompatible with this binary: records stay in the local spool until gatehouse on this node is upgraded", "err", err)
			} else {
				db.logger().Warn("postgres: schema not checked yet (records stay in the local spool until it is); retrying", "err", err)
			}
			last = msg
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, retryMax)
	}
}

func (db *DB) logger() *slog.Logger {
	if db.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return db.log
}
