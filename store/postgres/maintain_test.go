package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/spool"
	"github.com/gatehouse/gatehouse/store/wifi"
)

// Ended sessions older than the retention go, in batches; open sessions
// (however old) and recently ended ones stay.
func TestPurgeEndedSessions(t *testing.T) {
	pg := pgtest.Start(t)
	db := open(t, pg.CreateDatabase("gh_purge"))
	if _, err := db.Migrate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	old, recent := now.Add(-31*24*time.Hour), now.Add(-29*24*time.Hour)
	ins := func(from, n int, ended bool, at time.Time) {
		t.Helper()
		if _, err := db.Pool().Exec(ctx(t), `INSERT INTO wifi_sessions (class_token, node, nas, nas_addr, ended, started_at, updated_at)
			SELECT lpad(to_hex(i), 32, '0'), 'n', 'ap', '192.0.2.1', $3, $4, $4 FROM generate_series($1::int, $2::int) AS i`,
			from, from+n-1, ended, at); err != nil {
			t.Fatal(err)
		}
	}
	ins(1, 2500, true, old)     // purged, over three batches
	ins(10001, 5, true, recent) // ended within the retention: kept
	ins(20001, 7, false, old)   // open (the NAS never said stop): kept
	c, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- db.Maintain(c, MaintainConfig{EndedSessionRetention: 30 * 24 * time.Hour, PurgeBatch: 1000, PurgeEvery: time.Hour})
	}()
	count := func(where string) int {
		var n int
		if err := db.Pool().QueryRow(ctx(t), "SELECT count(*) FROM wifi_sessions WHERE "+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for end := time.Now().Add(20 * time.Second); count("ended AND updated_at < now() - interval '30 days'") > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("old ended sessions not purged")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := count("ended"); n != 5 {
		t.Fatalf("%d recently ended sessions left, want 5", n)
	}
	if n := count("NOT ended"); n != 7 {
		t.Fatalf("%d open sessions left, want 7", n)
	}
	// Idempotent: another node's purge finds nothing.
	if n, err := db.WiFi().PurgeEnded(ctx(t), now.Add(-30*24*time.Hour), 1000); err != nil || n != 0 {
		t.Fatalf("second purge: %d, %v", n, err)
	}
}

// Retention 0 keeps ended sessions forever.
func TestPurgeDisabled(t *testing.T) {
	pg := pgtest.Start(t)
	db := open(t, pg.CreateDatabase("gh_keep"))
	c, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- db.Maintain(c, MaintainConfig{PurgeEvery: 10 * time.Millisecond}) }()
	// Maintain migrates first.
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st, err := db.Status(ctx(t))
		if err == nil && len(st.Pending) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("not migrated: %v", err)
		}
	}
	if _, err := db.Pool().Exec(ctx(t), `INSERT INTO wifi_sessions (class_token, node, nas, nas_addr, ended, started_at, updated_at)
		VALUES (repeat('a', 32), 'n', 'ap', '192.0.2.1', true, now() - interval '10 years', now() - interval '10 years')`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-done
	var n int
	if err := db.Pool().QueryRow(ctx(t), "SELECT count(*) FROM wifi_sessions").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d sessions, %v; want the old ended one kept", n, err)
	}
}

// A node that starts against a new database that cannot be reached yet:
// Maintain retries the migration with backoff, the spool keeps the records
// meanwhile, and once the server is up they reach the database, without a
// restart.
func TestMaintainMigratesWhenDatabaseComesUp(t *testing.T) {
	pg := pgtest.Start(t)
	dsn := pg.CreateDatabase("gh_late")
	pg.Stop()
	db, err := Open(Config{DSN: dsn, MaxConns: 4, ConnectTimeout: time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sp, err := spool.Open(spool.Config{Dir: t.TempDir(), Node: "wifi-only", RetryMax: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	c, cancel := context.WithCancel(context.Background())
	defer cancel()
	maint, replay := make(chan error, 1), make(chan error, 1)
	go func() { maint <- db.Maintain(c, MaintainConfig{RetryMax: 200 * time.Millisecond}) }()
	go func() { replay <- sp.Run(c, db.WiFi()) }()
	for i := range 3 {
		if err := sp.Append(wifi.KindAcct, []byte(fmt.Sprintf(`{"time":"2026-12-01T12:00:00Z","status":"Start","session_id":"late-%d","nas":"ap","nas_addr":"192.0.2.1"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	for end := time.Now().Add(10 * time.Second); !sp.Stats().Failing; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the replayer never tried the database")
		}
	}
	time.Sleep(time.Second) // several migration attempts fail
	pg.Restart()
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		rows, err := db.WiFi().Accounting(ctx(t), "")
		if err == nil && len(rows) == 3 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("records not in the database after it came up: %d rows, %v; spool %+v", len(rows), err, sp.Stats())
		}
	}
	if st := sp.Stats(); st.Records != 0 {
		t.Fatalf("spool still holds %d records", st.Records)
	}
	cancel()
	if err := <-maint; err != nil {
		t.Fatal(err)
	}
	<-replay
}
