package postgres

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/policy/policytest"
	"github.com/gatehouse/gatehouse/store/pgtest"
)

// logBuf is a node's log.
type logBuf struct{ policytest.SyncBuffer }

// count is how many times sub was logged.
func (s *logBuf) count(sub string) int { return strings.Count(s.String(), sub) }

// node opens a pool on dsn playing a binary whose migrations are ms; its
// log goes to the returned buffer.
func node(t *testing.T, dsn string) (*DB, *logBuf) {
	t.Helper()
	var buf logBuf
	db, err := Open(Config{DSN: dsn, MaxConns: 4}, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db, &buf
}

// shipped is the binary's migrations.
func shipped(t *testing.T) []Migration {
	t.Helper()
	ms, err := Migrations()
	if err != nil || len(ms) < 3 {
		t.Fatalf("migrations: %d, %v", len(ms), err)
	}
	return ms
}

// synthetic is a migration a newer binary would ship, declared
// compatible from cf.
func synthetic(t *testing.T, v, cf int, sql string) Migration {
	t.Helper()
	m, err := parseMigration(fmt.Sprintf("%04d_future%d.sql", v, v), []byte(fmt.Sprintf("-- a newer binary's schema %d\n-- compatible-from: %d\n%s\n", v, cf, sql)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const warnAhead = "upgrade gatehouse on this node"

// (a) A binary that knows 2 on a database at 3 whose migration 3 declares
// itself compatible from 1 or 2: it migrates nothing, gets no error, its
// status says the database is ahead, and it warns once, not on every call.
func TestOlderBinaryRunsOnCompatibleSchema(t *testing.T) {
	pg := pgtest.Start(t)
	ms := shipped(t)
	for _, cf := range []int{1, 2} {
		dsn := pg.CreateDatabase(fmt.Sprintf("gh_older_ok_%d", cf))
		newer, _ := node(t, dsn)
		if _, err := newer.migrate(ctx(t), ms[:3]); err != nil {
			t.Fatal(err)
		}
		if _, err := newer.Pool().Exec(ctx(t), "UPDATE gatehouse_schema_migrations SET compatible_from = $1 WHERE version = 3", cf); err != nil {
			t.Fatal(err)
		}
		older, log := node(t, dsn)
		for range 3 { // a start and two reconnects
			if applied, err := older.migrate(ctx(t), ms[:2]); err != nil || len(applied) != 0 {
				t.Fatalf("compatible-from %d: migrate = %d applied, %v", cf, len(applied), err)
			}
		}
		if n := log.count(warnAhead); n != 1 {
			t.Errorf("compatible-from %d: %d warnings to upgrade, want 1", cf, n)
		}
		st, err := older.status(ctx(t), ms[:2])
		if err != nil || st.Version() != 3 || st.Known != 2 || len(st.Pending) != 0 || len(st.Ahead) != 1 || st.Ahead[0].Version != 3 || st.Ahead[0].CompatibleFrom != cf {
			t.Fatalf("compatible-from %d: status = %+v, %v", cf, st, err)
		}
	}
}

// (b) The same binary on a database whose migration 3 is not compatible
// with it (compatible from 3, or undeclared) is refused, as before the
// declarations, and the error names the version.
func TestOlderBinaryRefusesIncompatibleSchema(t *testing.T) {
	pg := pgtest.Start(t)
	ms := shipped(t)
	for _, tc := range []struct {
		set  string
		want string
	}{
		{"3", "migration 3 (" + ms[2].Name + ") compatible from 3"},
		{"NULL", "migration 3 (" + ms[2].Name + ") declares no compatibility"},
	} {
		dsn := pg.CreateDatabase("gh_older_refused_" + strings.ToLower(tc.set))
		newer, _ := node(t, dsn)
		if _, err := newer.migrate(ctx(t), ms[:3]); err != nil {
			t.Fatal(err)
		}
		if _, err := newer.Pool().Exec(ctx(t), "UPDATE gatehouse_schema_migrations SET compatible_from = "+tc.set+" WHERE version = 3"); err != nil {
			t.Fatal(err)
		}
		older, log := node(t, dsn)
		_, err := older.migrate(ctx(t), ms[:2])
		_, serr := older.status(ctx(t), ms[:2])
		for _, e := range []error{err, serr} {
			if e == nil || !errors.Is(e, ErrIncompatibleSchema) || !strings.Contains(e.Error(), "schema version 3 is newer than this binary knows (2)") || !strings.Contains(e.Error(), tc.want) {
				t.Errorf("compatible_from = %s: err = %v, want %q", tc.set, e, tc.want)
			}
		}
		if log.count(warnAhead) != 0 {
			t.Errorf("compatible_from = %s: a refused schema logged the compatible warning", tc.set)
		}
	}
}

// (c) A database migrated before the column existed: its rows have no
// declaration, so an older binary is refused; the first Migrate of a
// binary that knows them back-fills them (leaving a stored one alone), and
// the older binary then runs.
func TestBackfillCompatibleFrom(t *testing.T) {
	pg := pgtest.Start(t)
	ms := shipped(t)
	dsn := pg.CreateDatabase("gh_backfill")
	db, log := node(t, dsn)
	// Schema 3 as a binary from before the column left it.
	if _, err := db.Pool().Exec(ctx(t), createTable); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:3] {
		if _, err := db.Pool().Exec(ctx(t), m.SQL); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Pool().Exec(ctx(t), "INSERT INTO gatehouse_schema_migrations (version, name, sha256) VALUES ($1, $2, $3)", m.Version, m.Name, m.Sum); err != nil {
			t.Fatal(err)
		}
	}
	// Status reads such a table (no column: every declaration NULL).
	if st, err := db.status(ctx(t), ms[:3]); err != nil || st.Version() != 3 || st.Applied[2].CompatibleFrom != 0 {
		t.Fatalf("status before the column: %+v, %v", st, err)
	}
	if _, err := db.status(ctx(t), ms[:2]); err == nil || !strings.Contains(err.Error(), "declares no compatibility") {
		t.Fatalf("older binary before the back-fill: err = %v", err)
	}
	// A stored declaration is kept (here 2 says it is only compatible with itself).
	if _, err := db.Pool().Exec(ctx(t), addCompatible); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool().Exec(ctx(t), "UPDATE gatehouse_schema_migrations SET compatible_from = 2 WHERE version = 2"); err != nil {
		t.Fatal(err)
	}
	if applied, err := db.migrate(ctx(t), ms[:3]); err != nil || len(applied) != 0 {
		t.Fatalf("migrate: %d applied, %v", len(applied), err)
	}
	if log.count("compatibility declarations recorded") != 1 {
		t.Error("the back-fill was not logged")
	}
	st, err := db.status(ctx(t), ms[:3])
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{ms[0].CompatibleFrom, 2, ms[2].CompatibleFrom} {
		if got := st.Applied[i].CompatibleFrom; got != want {
			t.Errorf("version %d: compatible_from %d after the back-fill, want %d", i+1, got, want)
		}
	}
	if st, err := db.status(ctx(t), ms[:2]); err != nil || len(st.Ahead) != 1 {
		t.Fatalf("older binary after the back-fill: %+v, %v", st, err)
	}
	// The back-fill runs once: a second Migrate has nothing to record.
	if _, err := db.migrate(ctx(t), ms[:3]); err != nil || log.count("compatibility declarations recorded") != 1 {
		t.Fatalf("second migrate: %v, %d back-fills logged", err, log.count("compatibility declarations recorded"))
	}
}

// (d) A rolling upgrade at the store level: node A is upgraded to a binary
// with an additive migration 4 (compatible from 3) and applies it; node B,
// still on this binary, keeps running on the database and keeps writing
// what it writes; then B is upgraded and finds nothing to do. A later
// migration 5 that is not compatible is refused by both older binaries,
// naming it.
func TestRollingUpgradeCompatibleMigration(t *testing.T) {
	pg := pgtest.Start(t)
	ms := shipped(t)
	k := len(ms)
	dsn := pg.CreateDatabase("gh_rolling")
	a, _ := node(t, dsn)
	b, blog := node(t, dsn)
	for _, n := range []*DB{a, b} {
		if _, err := n.Migrate(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	m4 := synthetic(t, k+1, k, "ALTER TABLE vpn_peers ADD COLUMN note text;")
	withM4 := append(append([]Migration(nil), ms...), m4)
	if applied, err := a.migrate(ctx(t), withM4); err != nil || len(applied) != 1 || applied[0].Version != k+1 {
		t.Fatalf("node A (upgraded): %v, %v", applied, err)
	}
	// Node B, not upgraded: starts or reconnects, and writes.
	if applied, err := b.Migrate(ctx(t)); err != nil || len(applied) != 0 {
		t.Fatalf("node B (older): %d applied, %v", len(applied), err)
	}
	if blog.count(warnAhead) != 1 {
		t.Errorf("node B: %d warnings to upgrade, want 1", blog.count(warnAhead))
	}
	st, err := b.Status(ctx(t))
	if err != nil || len(st.Ahead) != 1 || st.Ahead[0].Version != k+1 || st.Ahead[0].CompatibleFrom != k || st.Known != k {
		t.Fatalf("node B status: %+v, %v", st, err)
	}
	if _, err := b.Pool().Exec(ctx(t), `INSERT INTO vpn_peers (site, fingerprint, public_key, address, identity_key, not_after, format, record)
		VALUES ('hq', $1, 'k1', '100.64.0.2', 'user/upn/a', now(), 1, '{}')`, strings.Repeat("a", 64)); err != nil {
		t.Fatalf("node B's write on schema %d: %v", k+1, err)
	}
	// Node B upgraded: the same binary as A, nothing left to do.
	if applied, err := b.migrate(ctx(t), withM4); err != nil || len(applied) != 0 {
		t.Fatalf("node B upgraded: %d applied, %v", len(applied), err)
	}
	// Migration 5 breaks older binaries: both refuse it, by number.
	m5 := synthetic(t, k+2, k+2, "ALTER TABLE vpn_peers RENAME COLUMN note TO remark;")
	if _, err := a.migrate(ctx(t), append(withM4, m5)); err != nil {
		t.Fatal(err)
	}
	for name, known := range map[string][]Migration{"knowing 4": withM4, "knowing 3": ms} {
		_, err := b.migrate(ctx(t), known)
		want := fmt.Sprintf("migration %d (future%d) compatible from %d", k+2, k+2, k+2)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("binary %s on schema %d: err = %v, want %q", name, k+2, err, want)
		}
	}
}
