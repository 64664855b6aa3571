package pgstore

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/vpn"
)

// Incremental resync. Schema 2 stamps every written row of vpn_peers, and
// the tombstone of every deleted one, with a revision (a sequence number)
// and the writing transaction's id (rev_xid). A read runs in one
// repeatable-read snapshot and returns, besides what it read, that
// snapshot's xmin: the oldest transaction still running when it was taken.
// Every change the read could not see belongs to a transaction with an id
// >= that xmin (it was running then, or began later), however late it
// commits; so the next read, "rev_xid >= previous xmin", sees it. A
// sequence number alone would skip it: a transaction that took revision 10
// and commits after one that took 11 was read. The price is an overlap:
// rows written since the oldest transaction then running are read again
// (Apply of an unchanged record changes nothing).

// xminSQL is the cursor of a read: its snapshot's xmin, as text (xid8
// travels as text both ways).
const xminSQL = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text"

var snapshot = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}

// resync reads the whole registry and hands it to t (Sync), then rewrites
// the cache if anything changed since it was last written. It returns the
// cursor of the next incremental read.
func (st *Store) resync(ctx context.Context, t Target) (string, error) {
	gen := st.changes.Load()
	asOf := time.Now()
	var (
		cursor string
		recs   []*vpn.PeerRecord
		bad    []vpn.Quarantined
	)
	err := pgx.BeginTxFunc(ctx, st.db.Pool(), snapshot, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, xminSQL).Scan(&cursor); err != nil {
			return err
		}
		var err error
		recs, bad, err = st.loadWhere(ctx, tx, "")
		return err
	})
	if err != nil {
		return "", resyncErr(err)
	}
	for _, q := range bad {
		st.log.Error("pgstore: stored peer unreadable by this node; not loaded (left in the database)", "row", q.Name, "why", q.Why)
	}
	changed, removed := t.Sync(recs, asOf)
	if changed+removed > 0 {
		st.log.Info("pgstore: resync applied changes", "changed", changed, "removed", removed, "peers", len(recs))
	}
	st.writeCacheIfChanged(gen, recs)
	return cursor, nil
}

// resyncSince applies to t what changed since the read whose cursor is
// since: rows written (Apply) and rows deleted, quarantined or unreadable
// (Forget). It returns the next cursor.
func (st *Store) resyncSince(ctx context.Context, t Target, since string) (string, error) {
	asOf := time.Now()
	var (
		cursor string
		recs   []*vpn.PeerRecord
		bad    []vpn.Quarantined
		gone   []string
	)
	err := pgx.BeginTxFunc(ctx, st.db.Pool(), snapshot, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, xminSQL).Scan(&cursor); err != nil {
			return err
		}
		var err error
		if recs, bad, err = st.loadWhere(ctx, tx, " AND rev_xid >= $2::text::xid8", since); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT fingerprint FROM vpn_peer_deletions WHERE site = $1 AND rev_xid >= $2::text::xid8
			UNION SELECT fingerprint FROM vpn_peers WHERE site = $1 AND rev_xid >= $2::text::xid8 AND quarantine IS NOT NULL`,
			st.cfg.Site, since)
		if err != nil {
			return err
		}
		gone, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return "", resyncErr(err)
	}
	for _, q := range bad {
		st.log.Error("pgstore: stored peer unreadable by this node; not loaded (left in the database)", "row", q.Name, "why", q.Why)
		gone = append(gone, q.Name[strings.LastIndexByte(q.Name, ' ')+1:])
	}
	present := make(map[string]bool, len(recs))
	for _, r := range recs {
		present[r.Fingerprint] = true
		t.Apply(r, asOf)
	}
	forgot := 0
	for _, fp := range gone {
		if !present[fp] {
			t.Forget(fp, asOf)
			forgot++
		}
	}
	if len(recs)+forgot > 0 {
		st.changes.Add(1)
		st.log.Debug("pgstore: incremental resync", "written", len(recs), "gone", forgot)
	}
	return cursor, nil
}

func resyncErr(err error) error {
	if errors.Is(err, vpn.ErrUnavailable) {
		return err
	}
	return wrap("resync", err)
}

// cacheDue reports whether the cache should be rewritten now: the next
// resync is then a full one (the cache holds the whole registry). So a
// changing registry costs one full read per CacheEvery, a quiet one none.
func (st *Store) cacheDue() bool {
	if st.cfg.Cache == "" {
		return false
	}
	st.cacheMu.Lock()
	defer st.cacheMu.Unlock()
	return !st.cacheWritten || (st.cacheGen != st.changes.Load() && time.Since(st.cacheAt) >= st.cfg.CacheEvery)
}

// purgeTombstones deletes the tombstones older than TombstoneRetention,
// 1000 at a time (short transactions, short locks). Any node may run it.
func (st *Store) purgeTombstones(ctx context.Context) error {
	for {
		ct, err := st.db.Pool().Exec(ctx, `DELETE FROM vpn_peer_deletions WHERE ctid = ANY(ARRAY(
			SELECT ctid FROM vpn_peer_deletions WHERE deleted_at < now() - $1 * interval '1 second' LIMIT 1000))`,
			st.cfg.TombstoneRetention.Seconds())
		if err != nil {
			return wrap("purge tombstones", err)
		}
		if ct.RowsAffected() < 1000 {
			return nil
		}
	}
}
