package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/store/spool"
	"github.com/gatehouse/gatehouse/store/wifi"
)

// WiFi is the PostgreSQL implementation of wifi.Store: the tables
// radius_accounting and wifi_sessions.
type WiFi struct{ db *DB }

var _ wifi.Store = (*WiFi)(nil)

// WiFi returns the Wi-Fi store on db.
func (db *DB) WiFi() *WiFi { return &WiFi{db: db} }

// insertAcct inserts a batch of accounting records. A record already
// stored — by its idempotency key (this spool's replay) or by its
// record_id (a copy another node received: schema 3) — is skipped.
const insertAcct = `INSERT INTO radius_accounting (idem_key, node, received_at, nas, nas_addr,
	status_type, acct_session, user_name, station, framed_ip, session_time, input_octets,
	output_octets, terminate_cause, class_token, record, record_id)
SELECT k, $1, t, n, na, st, NULLIF(sid, ''), NULLIF(un, ''), NULLIF(sta, ''), NULLIF(fip, '')::inet,
	stime, io, oo, tc, NULLIF(ct, ''), rec::jsonb, NULLIF(rid, '')
FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
	$8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[],
	$14::integer[], $15::text[], $16::text[], $17::text[])
	AS x(k, t, n, na, st, sid, un, sta, fip, stime, io, oo, tc, ct, rec, rid)
ON CONFLICT DO NOTHING`

const insertAudit = `INSERT INTO audit_events (idem_key, node, at, door, event, outcome, code, rule, identity, event_json)
SELECT k, $1, t, d, e, o, c, NULLIF(r, ''), NULLIF(i, ''), j::jsonb
FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
	AS x(k, t, d, e, o, c, r, i, j)
ON CONFLICT (idem_key) DO NOTHING`

const upsertSession = `INSERT INTO wifi_sessions (class_token, node, nas, nas_addr, acct_session,
	station, framed_ip, ended, record, started_at, updated_at)
VALUES ($1, $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), NULLIF($7, '')::inet, false, $8::jsonb, $9, $10)
ON CONFLICT (class_token) DO UPDATE SET node = EXCLUDED.node, nas = EXCLUDED.nas,
	nas_addr = EXCLUDED.nas_addr, acct_session = EXCLUDED.acct_session, station = EXCLUDED.station,
	framed_ip = EXCLUDED.framed_ip, record = EXCLUDED.record, updated_at = EXCLUDED.updated_at
WHERE wifi_sessions.updated_at < EXCLUDED.updated_at
	OR (wifi_sessions.updated_at = EXCLUDED.updated_at AND NOT wifi_sessions.ended)`

const endSession = `INSERT INTO wifi_sessions (class_token, node, nas, nas_addr, ended, started_at, updated_at)
VALUES ($1, $2, '', '', true, $3, $3)
ON CONFLICT (class_token) DO UPDATE SET ended = true, record = NULL, node = EXCLUDED.node,
	updated_at = EXCLUDED.updated_at
WHERE wifi_sessions.updated_at <= EXCLUDED.updated_at`

func validToken(t string) bool {
	if len(t) != 32 {
		return false
	}
	_, err := hex.DecodeString(t)
	return err == nil
}

// validIP returns s if it is an IP address, else "" (a value the inet cast
// would reject must not block the whole batch forever).
func validIP(s string) string {
	if _, err := netip.ParseAddr(s); err != nil {
		return ""
	}
	return s
}

// Apply implements spool.Target: one transaction per batch.
func (w *WiFi) Apply(ctx context.Context, node string, es []spool.Entry) error {
	var (
		keys, nas, naddr, st, sid, un, sta, fip, ct, rec, rid []string
		at                                                    []any
		stime, io, oo                                         []*int64
		tc                                                    []*int32
	)
	var au struct {
		keys, door, event, outcome, code, rule, name, rec []string
		at                                                []any
	}
	b := &pgx.Batch{}
	for _, e := range es {
		switch e.Kind {
		case wifi.KindAudit:
			var a wifi.Audit
			if err := json.Unmarshal(e.Data, &a); err != nil {
				w.db.warn("postgres: audit event skipped: not JSON", "key", spool.Key(node, e.Seq))
				continue
			}
			au.keys, au.at = append(au.keys, spool.Key(node, e.Seq)), append(au.at, a.Time)
			au.door, au.event, au.outcome = append(au.door, a.Door), append(au.event, a.Event), append(au.outcome, a.Outcome)
			au.code, au.rule, au.name = append(au.code, a.Code), append(au.rule, a.Rule), append(au.name, a.Name)
			au.rec = append(au.rec, string(e.Data))
		case wifi.KindAcct:
			var a wifi.Acct
			if err := json.Unmarshal(e.Data, &a); err != nil {
				w.db.warn("postgres: accounting record skipped: not JSON", "key", spool.Key(node, e.Seq))
				continue
			}
			keys = append(keys, spool.Key(node, e.Seq))
			at = append(at, a.Time)
			nas, naddr, st = append(nas, a.NAS), append(naddr, a.NASAddr), append(st, a.Status)
			sid, un, sta = append(sid, a.SessionID), append(un, a.UserName), append(sta, a.CallingStation)
			fip, ct, rec = append(fip, validIP(a.FramedIP)), append(ct, a.ClassToken), append(rec, string(e.Data))
			rid = append(rid, a.RecordID)
			stime = append(stime, u32p(a.SessionTime))
			io, oo = append(io, u64p(a.InputOctets)), append(oo, u64p(a.OutputOctets))
			var c *int32
			if a.TerminateCause != nil {
				v := int32(*a.TerminateCause)
				c = &v
			}
			tc = append(tc, c)
		case wifi.KindSession:
			var s wifi.Session
			if err := json.Unmarshal(e.Data, &s); err != nil || !validToken(s.Token) {
				w.db.warn("postgres: session record skipped: malformed", "key", spool.Key(node, e.Seq))
				continue
			}
			b.Queue(upsertSession, s.Token, node, s.NAS, s.NASAddr, s.SessionID, s.Station, validIP(s.FramedIP), string(e.Data), s.Accepted, s.Updated)
		case wifi.KindSessionEnd:
			var s wifi.SessionEnd
			if err := json.Unmarshal(e.Data, &s); err != nil || !validToken(s.Token) {
				w.db.warn("postgres: session end skipped: malformed", "key", spool.Key(node, e.Seq))
				continue
			}
			b.Queue(endSession, s.Token, node, s.Updated)
		}
	}
	err := pgx.BeginFunc(ctx, w.db.pool, func(tx pgx.Tx) error {
		if len(keys) > 0 {
			if _, err := tx.Exec(ctx, insertAcct, node, keys, at, nas, naddr, st, sid, un, sta, fip, stime, io, oo, tc, ct, rec, rid); err != nil {
				return err
			}
		}
		if len(au.keys) > 0 {
			if _, err := tx.Exec(ctx, insertAudit, node, au.keys, au.at, au.door, au.event, au.outcome, au.code, au.rule, au.name, au.rec); err != nil {
				return err
			}
		}
		if b.Len() > 0 {
			return tx.SendBatch(ctx, b).Close()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: wifi: %w", err)
	}
	return nil
}

func u32p(v *uint32) *int64 {
	if v == nil {
		return nil
	}
	x := int64(*v)
	return &x
}

func u64p(v *uint64) *int64 {
	if v == nil || *v > 1<<63-1 {
		return nil
	}
	x := int64(*v)
	return &x
}

func (db *DB) warn(msg string, args ...any) {
	if db.log != nil {
		db.log.Warn(msg, args...)
	}
}

// LookupSession implements wifi.Store.
func (w *WiFi) LookupSession(ctx context.Context, token string) (json.RawMessage, bool, error) {
	var rec []byte
	err := w.db.pool.QueryRow(ctx, "SELECT record FROM wifi_sessions WHERE class_token = $1 AND NOT ended", token).Scan(&rec)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("postgres: wifi session: %w", err)
	}
	return rec, true, nil
}

// Accounting implements wifi.Store.
func (w *WiFi) Accounting(ctx context.Context, acctSession string) ([]wifi.AcctRow, error) {
	rows, err := w.db.pool.Query(ctx, `SELECT idem_key, node, record FROM radius_accounting
		WHERE $1 = '' OR acct_session = $1 ORDER BY id`, acctSession)
	if err != nil {
		return nil, fmt.Errorf("postgres: accounting: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (wifi.AcctRow, error) {
		var a wifi.AcctRow
		var rec []byte
		if err := r.Scan(&a.Key, &a.Node, &rec); err != nil {
			return a, err
		}
		a.Record = rec
		err := json.Unmarshal(rec, &a.Acct)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: accounting: %w", err)
	}
	return out, nil
}
