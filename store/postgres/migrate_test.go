package postgres

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/pgtest"
)

func open(t *testing.T, dsn string) *DB {
	t.Helper()
	db, err := Open(Config{DSN: dsn, MaxConns: 4}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestMigrationsShipped(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].Version != 1 || ms[0].Name != "init" {
		t.Fatalf("migrations = %+v", ms)
	}
}

// Two nodes starting at once against an empty database: the advisory lock
// makes one apply the schema and the other find it applied.
func TestMigrateConcurrentNodes(t *testing.T) {
	pg := pgtest.Start(t)
	dsn := pg.CreateDatabase("gh_concurrent")
	const nodes = 4
	var wg sync.WaitGroup
	applied := make([]int, nodes)
	errs := make([]error, nodes)
	for i := range nodes {
		db := open(t, dsn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms, err := db.Migrate(ctx(t))
			applied[i], errs[i] = len(ms), err
		}()
	}
	wg.Wait()
	total := 0
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		total += applied[i]
	}
	known, _ := Migrations()
	if total != len(known) {
		t.Fatalf("migrations applied over all nodes = %d, want %d (each once)", total, len(known))
	}
	st, err := open(t, dsn).Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Version() != len(known) || len(st.Pending) != 0 {
		t.Fatalf("status = version %d, pending %d", st.Version(), len(st.Pending))
	}
	// Idempotent: a restart applies nothing.
	if ms, err := open(t, dsn).Migrate(ctx(t)); err != nil || len(ms) != 0 {
		t.Fatalf("second migrate = %d, %v", len(ms), err)
	}
}

// The database enforces one lease per address per site.
func TestSchemaLeaseUnique(t *testing.T) {
	pg := pgtest.Start(t)
	db := open(t, pg.CreateDatabase("gh_unique"))
	if _, err := db.Migrate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	ins := func(fp, key, addr string) error {
		_, err := db.Pool().Exec(ctx(t), `INSERT INTO vpn_peers
			(site, fingerprint, public_key, address, identity_key, not_after, format, record)
			VALUES ('hq', $1, $2, $3, 'user/upn/a', now(), 1, '{}')`, fp, key, addr)
		return err
	}
	if err := ins(strings.Repeat("a", 64), "k1", "100.64.0.2"); err != nil {
		t.Fatal(err)
	}
	if err := ins(strings.Repeat("b", 64), "k2", "100.64.0.2"); err == nil {
		t.Fatal("a second lease of 100.64.0.2 was accepted")
	}
}

// A database whose schema is newer than the binary, or whose applied
// migration was edited, is refused with a message that says which.
func TestStatusRefusesForeignSchema(t *testing.T) {
	pg := pgtest.Start(t)
	db := open(t, pg.CreateDatabase("gh_foreign"))
	if _, err := db.Migrate(ctx(t)); err != nil {
		t.Fatal(err)
	}
	known, _ := Migrations()
	// A newer version that declares no compatibility (NULL) is refused.
	if _, err := db.Pool().Exec(ctx(t), "INSERT INTO gatehouse_schema_migrations (version, name, sha256) VALUES ($1, 'future', 'x')", len(known)+1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Status(ctx(t)); err == nil || !strings.Contains(err.Error(), "newer than this binary") || !strings.Contains(err.Error(), "(future) declares no compatibility") {
		t.Fatalf("err = %v", err)
	}
	// A gap is refused whatever the newer version declares.
	db.Pool().Exec(ctx(t), "UPDATE gatehouse_schema_migrations SET version = 99, compatible_from = 1 WHERE name = 'future'")
	if _, err := db.Migrate(ctx(t)); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("err = %v", err)
	}
	db.Pool().Exec(ctx(t), "DELETE FROM gatehouse_schema_migrations WHERE version = 99")
	db.Pool().Exec(ctx(t), "UPDATE gatehouse_schema_migrations SET sha256 = 'edited' WHERE version = 1")
	if _, err := db.Migrate(ctx(t)); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("err = %v", err)
	}
}

// An unparsable DSN's error never repeats the DSN (it may hold a password).
func TestOpenDSNSecret(t *testing.T) {
	_, err := Open(Config{DSN: "postgres://u:s3cret-pw@[::1"}, nil)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v", err)
	}
}

// Schema 2 on a database with peers already stored (schema 1): every
// existing row gets its own revision and a transaction id, later writes get
// newer revisions, and deletions leave tombstones.
func TestMigrateRevisionsExistingRows(t *testing.T) {
	pg := pgtest.Start(t)
	db := open(t, pg.CreateDatabase("gh_revs"))
	ms, err := Migrations()
	if err != nil || len(ms) < 2 {
		t.Fatalf("migrations: %d, %v", len(ms), err)
	}
	// Schema 1 only, as an older binary left it.
	if _, err := db.Pool().Exec(ctx(t), createTable); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool().Exec(ctx(t), ms[0].SQL); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool().Exec(ctx(t), "INSERT INTO gatehouse_schema_migrations (version, name, sha256) VALUES (1, $1, $2)", ms[0].Name, ms[0].Sum); err != nil {
		t.Fatal(err)
	}
	for i, c := range "abc" {
		if _, err := db.Pool().Exec(ctx(t), `INSERT INTO vpn_peers (site, fingerprint, public_key, address, identity_key, not_after, format, record)
			VALUES ('hq', $1, $2, $3, 'user/upn/a', now(), 1, '{}')`, strings.Repeat(string(c), 64), "k"+string(c), "100.64.0."+string(rune('2'+i))); err != nil {
			t.Fatal(err)
		}
	}
	if applied, err := db.Migrate(ctx(t)); err != nil || len(applied) != len(ms)-1 {
		t.Fatalf("migrate: %d applied, %v", len(applied), err)
	}
	var n, distinct int
	var maxRev int64
	if err := db.Pool().QueryRow(ctx(t), "SELECT count(*), count(DISTINCT rev), max(rev) FROM vpn_peers WHERE rev_xid IS NOT NULL").Scan(&n, &distinct, &maxRev); err != nil {
		t.Fatal(err)
	}
	if n != 3 || distinct != 3 {
		t.Fatalf("existing rows: %d stamped, %d distinct revisions; want 3, 3", n, distinct)
	}
	var rev int64
	if err := db.Pool().QueryRow(ctx(t), "UPDATE vpn_peers SET node = 'x' WHERE fingerprint = $1 RETURNING rev", strings.Repeat("a", 64)).Scan(&rev); err != nil {
		t.Fatal(err)
	}
	if rev <= maxRev {
		t.Fatalf("an update got revision %d, not newer than %d", rev, maxRev)
	}
	if _, err := db.Pool().Exec(ctx(t), "DELETE FROM vpn_peers WHERE fingerprint = $1", strings.Repeat("b", 64)); err != nil {
		t.Fatal(err)
	}
	var fp string
	if err := db.Pool().QueryRow(ctx(t), "SELECT fingerprint FROM vpn_peer_deletions WHERE site = 'hq' AND rev > $1", rev).Scan(&fp); err != nil || fp != strings.Repeat("b", 64) {
		t.Fatalf("tombstone: %q, %v", fp, err)
	}
}
