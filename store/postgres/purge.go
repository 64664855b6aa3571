package postgres

import (
	"context"
	"fmt"
	"time"
)

// A table Maintain purges: its rows older than a retention go, in batches.
// Each statement deletes by primary key the rows its subquery locked
// (ordered by the time column, which has an index; rows another
// transaction holds are skipped: that transaction is another node's purge
// deleting them, or a writer, and the next purge takes them), so every
// node may purge at once: each row is deleted by exactly one of them.
const (
	purgeEndedSQL = `DELETE FROM wifi_sessions WHERE class_token = ANY(ARRAY(
	SELECT class_token FROM wifi_sessions WHERE ended AND updated_at < $1
	ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED))`
	purgeAccountingSQL = `DELETE FROM radius_accounting WHERE id = ANY(ARRAY(
	SELECT id FROM radius_accounting WHERE received_at < $1
	ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED))`
	purgeAuditSQL = `DELETE FROM audit_events WHERE id = ANY(ARRAY(
	SELECT id FROM audit_events WHERE at < $1
	ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED))`
)

// PurgeEnded deletes the ended Wi-Fi sessions last updated before before,
// batch rows per statement (each its own short transaction; rows another
// transaction holds are skipped, and taken by the next purge). It returns
// how many it deleted. Open sessions are never touched.
func (w *WiFi) PurgeEnded(ctx context.Context, before time.Time, batch int) (int64, error) {
	n, err := w.db.purge(ctx, purgeEndedSQL, before, batch)
	if err != nil {
		return n, fmt.Errorf("postgres: purge ended sessions: %w", err)
	}
	return n, nil
}

// PurgeAccounting deletes the accounting records (radius_accounting)
// received before before, batch rows per statement, as PurgeEnded. A copy
// of a purged record resent later (a spool that replays after an outage
// longer than the retention) is stored again: its record_id is no longer
// there to drop it.
func (w *WiFi) PurgeAccounting(ctx context.Context, before time.Time, batch int) (int64, error) {
	n, err := w.db.purge(ctx, purgeAccountingSQL, before, batch)
	if err != nil {
		return n, fmt.Errorf("postgres: purge accounting: %w", err)
	}
	return n, nil
}

// PurgeAudit deletes the audit events (audit_events) that happened before
// before, batch rows per statement, as PurgeEnded.
func (w *WiFi) PurgeAudit(ctx context.Context, before time.Time, batch int) (int64, error) {
	n, err := w.db.purge(ctx, purgeAuditSQL, before, batch)
	if err != nil {
		return n, fmt.Errorf("postgres: purge audit events: %w", err)
	}
	return n, nil
}

// purge runs one of the purge statements until a batch comes back short
// and returns the rows deleted. Each statement is its own transaction, so
// a purge of a million rows never holds more than batch row locks.
func (db *DB) purge(ctx context.Context, stmt string, before time.Time, batch int) (int64, error) {
	if batch <= 0 {
		batch = defaultPurgeBatch
	}
	var total int64
	for {
		ct, err := db.pool.Exec(ctx, stmt, before, batch)
		if err != nil {
			return total, err
		}
		total += ct.RowsAffected()
		if ct.RowsAffected() < int64(batch) {
			return total, nil
		}
	}
}
