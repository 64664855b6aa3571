package postgres

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy/policytest"
	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/spool"
	"github.com/gatehouse/gatehouse/store/wifi"
)

// purgeFixture is a migrated database holding old and recent rows of the
// three kinds Maintain purges.
type purgeFixture struct {
	t  *testing.T
	db *DB
}

func newPurgeFixture(t *testing.T, pg *pgtest.Server, name string) *purgeFixture {
	t.Helper()
	db := open(t, pg.CreateDatabase(name))
	if _, err := db.Migrate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	return &purgeFixture{t: t, db: db}
}

// insert adds n rows of each kind (accounting records, audit events,
// ended Wi-Fi sessions) dated at, their keys numbered from from.
func (f *purgeFixture) insert(from, n int, at time.Time) {
	f.t.Helper()
	for _, q := range []string{
		`INSERT INTO radius_accounting (idem_key, node, received_at, nas, nas_addr, status_type, record, record_id)
		SELECT 'n:' || i, 'n', $3, 'ap', '192.0.2.1', 'interim', '{}', lpad(to_hex(i), 32, '0')
		FROM generate_series($1::int, $2::int) AS i`,
		`INSERT INTO audit_events (idem_key, node, at, door, event, outcome, code, event_json)
		SELECT 'n:' || i, 'n', $3, 'wifi', 'login', 'deny', 'no_rule', '{}'
		FROM generate_series($1::int, $2::int) AS i`,
		`INSERT INTO wifi_sessions (class_token, node, nas, nas_addr, ended, started_at, updated_at)
		SELECT lpad(to_hex(i), 32, '0'), 'n', 'ap', '192.0.2.1', true, $3, $3
		FROM generate_series($1::int, $2::int) AS i`,
	} {
		if _, err := f.db.Pool().Exec(ctx(f.t), q, from, from+n-1, at); err != nil {
			f.t.Fatal(err)
		}
	}
}

// count is the rows of table older than the given age (0: all rows).
func (f *purgeFixture) count(table string, olderThan time.Duration) int {
	f.t.Helper()
	col := map[string]string{"radius_accounting": "received_at", "audit_events": "at", "wifi_sessions": "updated_at"}[table]
	var n int
	if err := f.db.Pool().QueryRow(ctx(f.t), "SELECT count(*) FROM "+table+" WHERE "+col+" < now() - $1::interval",
		olderThan.String()).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// maintain runs Maintain with cfg until stop is called.
func (f *purgeFixture) maintain(db *DB, cfg MaintainConfig) (stop func()) {
	c, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- db.Maintain(c, cfg) }()
	return func() {
		f.t.Helper()
		cancel()
		if err := <-done; err != nil {
			f.t.Fatal(err)
		}
	}
}

// waitGone waits until table holds no row older than age.
func (f *purgeFixture) waitGone(table string, age time.Duration) {
	f.t.Helper()
	for end := time.Now().Add(20 * time.Second); f.count(table, age) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			f.t.Fatalf("%s: %d rows older than %v left", table, f.count(table, age), age)
		}
	}
}

const (
	acctRetention  = 90 * 24 * time.Hour
	auditRetention = 365 * 24 * time.Hour
)

// Accounting records and audit events older than their retentions go, over
// several batches (10 rows, 3 per statement); newer ones stay; each kind's
// count is logged.
func TestPurgeAccountingAndAudit(t *testing.T) {
	pg := pgtest.Start(t)
	f := newPurgeFixture(t, pg, "gh_retention")
	now := time.Now()
	f.insert(1, 10, now.Add(-400*24*time.Hour))  // older than both retentions
	f.insert(101, 4, now.Add(-100*24*time.Hour)) // accounting: old; audit: kept
	f.insert(201, 5, now.Add(-24*time.Hour))     // kept
	var logs policytest.SyncBuffer
	db, err := Open(Config{DSN: pg.DSN("gh_retention"), MaxConns: 4}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stop := f.maintain(db, MaintainConfig{AccountingRetention: acctRetention, AuditRetention: auditRetention,
		PurgeBatch: 3, PurgeEvery: time.Hour})
	f.waitGone("radius_accounting", acctRetention)
	f.waitGone("audit_events", auditRetention)
	for end := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "audit events purged"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no log of the audit purge: %s", logs.String())
		}
	}
	stop()
	if n := f.count("radius_accounting", 0); n != 5 {
		t.Errorf("%d accounting records left, want the 5 recent ones", n)
	}
	if n := f.count("audit_events", 0); n != 9 {
		t.Errorf("%d audit events left, want 9 (within 365 days)", n)
	}
	if n := f.count("wifi_sessions", 0); n != 19 {
		t.Errorf("%d sessions left, want all 19 (ended_session_retention 0 keeps them)", n)
	}
	for _, want := range []string{"table=radius_accounting rows=14", "table=audit_events rows=10"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	// Idempotent: another node's purge finds nothing.
	w := f.db.WiFi()
	if n, err := w.PurgeAccounting(ctx(t), now.Add(-acctRetention), 3); err != nil || n != 0 {
		t.Errorf("second accounting purge: %d, %v", n, err)
	}
	if n, err := w.PurgeAudit(ctx(t), now.Add(-auditRetention), 3); err != nil || n != 0 {
		t.Errorf("second audit purge: %d, %v", n, err)
	}
}

// Retention 0 keeps every kind forever.
func TestPurgeZeroRetentionKeeps(t *testing.T) {
	pg := pgtest.Start(t)
	f := newPurgeFixture(t, pg, "gh_keep_all")
	f.insert(1, 7, time.Now().Add(-10*365*24*time.Hour))
	stop := f.maintain(f.db, MaintainConfig{PurgeBatch: 3, PurgeEvery: 10 * time.Millisecond})
	time.Sleep(200 * time.Millisecond) // many rounds
	stop()
	for _, table := range []string{"radius_accounting", "audit_events", "wifi_sessions"} {
		if n := f.count(table, 0); n != 7 {
			t.Errorf("%s: %d rows left, want all 7", table, n)
		}
	}
}

// Two nodes purging at once (two pools, several rounds each): every old row
// is deleted exactly once, neither fails, recent rows stay.
func TestPurgeConcurrent(t *testing.T) {
	pg := pgtest.Start(t)
	f := newPurgeFixture(t, pg, "gh_purge_race")
	const old = 600
	now := time.Now()
	f.insert(1, old, now.Add(-400*24*time.Hour))
	f.insert(10001, 5, now.Add(-time.Hour))
	other := open(t, pg.DSN("gh_purge_race"))
	for _, kind := range []struct {
		table string
		purge func(*DB) (int64, error)
	}{
		{"radius_accounting", func(db *DB) (int64, error) {
			return db.WiFi().PurgeAccounting(ctx(t), now.Add(-acctRetention), 7)
		}},
		{"audit_events", func(db *DB) (int64, error) { return db.WiFi().PurgeAudit(ctx(t), now.Add(-auditRetention), 7) }},
		{"wifi_sessions", func(db *DB) (int64, error) {
			return db.WiFi().PurgeEnded(ctx(t), now.Add(-30*24*time.Hour), 7)
		}},
	} {
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			total int64
			errs  []error
		)
		for _, db := range []*DB{f.db, other, f.db, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := kind.purge(db)
				mu.Lock()
				defer mu.Unlock()
				total += n
				if err != nil {
					errs = append(errs, err)
				}
			}()
		}
		wg.Wait()
		if len(errs) > 0 || total != old {
			t.Errorf("%s: concurrent purges deleted %d rows (want %d), errors %v", kind.table, total, old, errs)
		}
		if n := f.count(kind.table, 0); n != 5 {
			t.Errorf("%s: %d rows left, want the 5 recent ones", kind.table, n)
		}
	}
}

// One kind's purge failing (the node's role may not delete accounting
// records) is logged, naming the key and never the DSN's password, and the
// other kinds are purged all the same, round after round.
func TestPurgeOneKindFailing(t *testing.T) {
	pg := pgtest.Start(t)
	f := newPurgeFixture(t, pg, "gh_purge_fail")
	f.insert(1, 10, time.Now().Add(-400*24*time.Hour))
	for _, q := range []string{
		`CREATE ROLE purger LOGIN PASSWORD 'pw-do-not-log'`,
		`GRANT ALL ON ALL TABLES IN SCHEMA public TO purger`,
		`GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO purger`,
		`GRANT CREATE ON SCHEMA public TO purger`,
		`REVOKE DELETE ON radius_accounting FROM purger`,
	} {
		if _, err := f.db.Pool().Exec(ctx(t), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	dsn := strings.Replace(pg.DSN("gh_purge_fail"), pg.User+"@", "purger:pw-do-not-log@", 1)
	var logs policytest.SyncBuffer
	db, err := Open(Config{DSN: dsn, MaxConns: 4}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stop := f.maintain(db, MaintainConfig{EndedSessionRetention: 30 * 24 * time.Hour, AccountingRetention: acctRetention,
		AuditRetention: auditRetention, PurgeBatch: 3, PurgeEvery: 20 * time.Millisecond})
	f.waitGone("audit_events", 0)
	f.waitGone("wifi_sessions", 0)
	for end := time.Now().Add(10 * time.Second); strings.Count(logs.String(), "purge failed") < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the failing purge was not logged (and retried):\n%s", logs.String())
		}
	}
	stop()
	if n := f.count("radius_accounting", 0); n != 10 {
		t.Errorf("%d accounting records left, want 10 (the role may not delete them)", n)
	}
	out := logs.String()
	if !strings.Contains(out, "key=store.accounting_retention") || !strings.Contains(out, "table=radius_accounting") {
		t.Errorf("the failure does not name the table and key:\n%s", out)
	}
	if strings.Contains(out, "pw-do-not-log") || strings.Contains(out, "key=store.audit_retention") {
		t.Errorf("log holds the password, or a failure of the audit purge:\n%s", out)
	}
}

// What accounting_retention's doc warns of: a copy of a record resent by
// another node is dropped (record_id) while the stored row is there, and
// stored again once the purge took it.
func TestPurgedAccountingResendStoredAgain(t *testing.T) {
	pg := pgtest.Start(t)
	f := newPurgeFixture(t, pg, "gh_purge_resend")
	old := time.Now().Add(-100 * 24 * time.Hour).UTC()
	rec, _ := json.Marshal(wifi.Acct{Time: old, Status: "stop", SessionID: "s1", NAS: "ap", NASAddr: "192.0.2.1",
		RecordID: "0123456789abcdef0123456789abcdef"})
	apply := func(node string) {
		t.Helper()
		if err := f.db.WiFi().Apply(ctx(t), node, []spool.Entry{{Seq: 1, Kind: wifi.KindAcct, Data: rec}}); err != nil {
			t.Fatal(err)
		}
	}
	apply("gw1")
	apply("gw2") // the same record, resent to another node: dropped
	if n := f.count("radius_accounting", 0); n != 1 {
		t.Fatalf("%d rows before the purge, want 1", n)
	}
	if n, err := f.db.WiFi().PurgeAccounting(ctx(t), time.Now().Add(-acctRetention), 1000); err != nil || n != 1 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	apply("gw3") // a very late resend, after the purge: stored again
	if n := f.count("radius_accounting", 0); n != 1 {
		t.Fatalf("%d rows after the late resend, want 1 (stored again)", n)
	}
}
