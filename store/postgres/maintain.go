package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// MaintainConfig says what Maintain does. The zero value migrates (with
// retries), purges nothing, checks hourly.
type MaintainConfig struct {
	// EndedSessionRetention is how long an ended Wi-Fi session's row is
	// kept (counted from its last update); 0 keeps them forever.
	EndedSessionRetention time.Duration
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

// Maintain keeps this database current until ctx is done, on any node
// (everything it does is idempotent and safe on every node at once): it
// applies the binary's pending migrations, retrying with backoff while the
// server cannot be reached (a node that starts before its database does
// not wait for its next start to get a schema: its spool replays as soon
// as the schema is there), then purges old ended Wi-Fi sessions every
// PurgeEvery. It returns nil when ctx is done.
func (db *DB) Maintain(ctx context.Context, cfg MaintainConfig) error {
	if cfg.PurgeEvery <= 0 {
		cfg.PurgeEvery = time.Hour
	}
	if cfg.PurgeBatch <= 0 {
		cfg.PurgeBatch = 1000
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 30 * time.Second
	}
	if !db.migrateRetrying(ctx, cfg.RetryMax) || cfg.EndedSessionRetention <= 0 {
		return nil
	}
	for {
		n, err := db.WiFi().PurgeEnded(ctx, time.Now().Add(-cfg.EndedSessionRetention), cfg.PurgeBatch)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			db.logger().Warn("postgres: purge of ended Wi-Fi sessions failed; retried later", "err", err, "purged", n)
		case n > 0:
			db.logger().Info("postgres: ended Wi-Fi sessions purged", "rows", n, "retention", cfg.EndedSessionRetention.String())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(cfg.PurgeEvery):
		}
	}
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
			db.logger().Warn("postgres: schema not checked yet (records stay in the local spool until it is); retrying", "err", err)
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

// PurgeEnded deletes the ended Wi-Fi sessions last updated before before,
// batch rows per statement (each its own short transaction; rows another
// transaction holds are skipped, and taken by the next purge). It returns
// how many it deleted. Open sessions are never touched.
func (w *WiFi) PurgeEnded(ctx context.Context, before time.Time, batch int) (int64, error) {
	var total int64
	for {
		ct, err := w.db.pool.Exec(ctx, `DELETE FROM wifi_sessions WHERE class_token = ANY(ARRAY(
			SELECT class_token FROM wifi_sessions WHERE ended AND updated_at < $1
			ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED))`, before, batch)
		if err != nil {
			return total, fmt.Errorf("postgres: purge ended sessions: %w", err)
		}
		total += ct.RowsAffected()
		if ct.RowsAffected() < int64(batch) {
			return total, nil
		}
	}
}
