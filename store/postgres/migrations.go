package postgres

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Writing a migration (store/postgres/migrations/NNNN_name.sql).
//
// Each file's header (its leading comment lines) holds one line
//
//	-- compatible-from: K
//
// K is the oldest schema version whose binaries still run correctly on a
// database that has this migration applied (1 <= K <= the file's version).
// It is stored in gatehouse_schema_migrations.compatible_from, so a binary
// that does not know this migration can still read it: a node whose binary
// knows versions 1..K' runs on a database at a newer version V iff every
// applied version in K'+1..V declares K <= K'. That is what lets a site
// upgrade its nodes one at a time.
//
// The rule for whoever writes the next one: look at what the binaries that
// know only the previous versions do with the tables you change (git show
// <rev>:path of their SQL), and declare the oldest version whose binaries
// are still right, not merely still working.
//   - Compatible (K below the new version): additive changes an older
//     binary ignores safely. A new table it never reads; a new nullable
//     column, or one with a default, or one a trigger fills (every insert
//     and update of an older binary must still be valid and mean the same);
//     a new index that its writes cannot violate (a partial unique index on
//     a column it leaves NULL); a trigger that keeps a new structure right
//     under an older binary's writes and deletes.
//   - Not compatible (K = the new version): a new NOT NULL column without a
//     default or trigger (an older binary's inserts fail); a renamed,
//     dropped or retyped column or table; a new constraint its writes can
//     violate; a changed meaning (a column or a value it reads or writes
//     means something else now, a row it would write is now wrong or would
//     be missed by newer nodes). Older nodes then refuse the database (as
//     every node did before this declaration existed): upgrade the whole
//     site in a short window.
//
// The shipped declarations (checked against the SQL of the binaries that
// knew only the versions before; the files' comments cannot say it: their
// sums would change):
//   - 2 (vpn_revisions), compatible from 1: a schema-1 binary names its
//     columns in every statement on vpn_peers (upsert with ON CONFLICT DO
//     UPDATE, UPDATE of quarantine, DELETE, SELECTs of record and chain);
//     rev and rev_xid are NOT NULL without default, but the BEFORE INSERT
//     OR UPDATE trigger fills both before the constraint is checked, on
//     the upsert's update path too; its row DELETE fires the AFTER DELETE
//     trigger, so it leaves a tombstone (it never TRUNCATEs, which would
//     not). Its NOTIFY payload is unchanged, so newer nodes follow its
//     writes, and the incremental resync of newer nodes sees them stamped.
//     It does not purge tombstones: a newer node holding the lease does.
//   - 3 (accounting_record_id), compatible from 1: the new column is
//     nullable and its unique index partial (WHERE record_id IS NOT NULL);
//     binaries that know 1 or 2 insert accounting with ON CONFLICT
//     (idem_key) DO NOTHING and no record_id, so NULL, which that index
//     never rejects, and read radius_accounting by named columns. While
//     such a node runs, a record an access point resends to it and to a
//     newer node is stored twice, as before schema 3: not a misuse.
//
// Never edit an applied migration, its declaration included: the SHA-256
// (which covers the file without its compatible-from line, so that the
// sums of migrations 1 to 3, applied before the line existed, still match)
// catches edits of the SQL, and a database keeps the declaration it was
// migrated with.

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one numbered schema change shipped in the binary.
type Migration struct {
	Version int
	Name    string // file name without the number and .sql
	SQL     string
	Sum     string // SHA-256 of SQL without its compatible-from line, hex
	// CompatibleFrom is the oldest schema version whose binaries still run
	// correctly on a database that has this migration applied.
	CompatibleFrom int
}

// Migrations lists the binary's migrations in order.
func Migrations() ([]Migration, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("postgres: migrations: %w", err)
	}
	return loadMigrations(sub)
}

// loadMigrations reads the NNNN_name.sql files of fsys's top directory.
func loadMigrations(fsys fs.FS) ([]Migration, error) {
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("postgres: migrations: %w", err)
	}
	var ms []Migration
	for _, e := range ents {
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("postgres: migrations: %w", err)
		}
		m, err := parseMigration(e.Name(), b)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := range ms {
		if ms[i].Version != i+1 {
			return nil, fmt.Errorf("postgres: migrations: version %d missing or repeated", i+1)
		}
	}
	return ms, nil
}

// compatLine is the exact form of the declaration.
var compatLine = regexp.MustCompile(`^-- compatible-from: ([1-9][0-9]{0,8})$`)

// parseMigration reads one file: its number and name from file, its
// compatible-from declaration from its header.
func parseMigration(file string, b []byte) (Migration, error) {
	num, name, ok := strings.Cut(strings.TrimSuffix(file, ".sql"), "_")
	v, err := strconv.Atoi(num)
	if !ok || err != nil || v <= 0 || !strings.HasSuffix(file, ".sql") {
		return Migration{}, fmt.Errorf("postgres: migrations: %s: want NNNN_name.sql", file)
	}
	fail := func(line int, format string, a ...any) (Migration, error) {
		return Migration{}, fmt.Errorf("postgres: migrations: %s:%d: %s", file, line, fmt.Sprintf(format, a...))
	}
	text := string(b)
	header := true
	found, at := 0, -1 // the declaration's value and its byte offset
	var atLen int
	off := 0
	for i, line := range strings.SplitAfter(text, "\n") {
		l := strings.TrimRight(line, "\n")
		trimmed := strings.TrimSpace(l)
		if header && trimmed != "" && !strings.HasPrefix(trimmed, "--") {
			header = false
		}
		if strings.HasPrefix(trimmed, "--") && strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(trimmed, "--")), "compatible-from") {
			switch mm := compatLine.FindStringSubmatch(l); {
			case !header:
				return fail(i+1, "the compatible-from line must be in the leading comment lines")
			case at >= 0:
				return fail(i+1, "a second compatible-from line")
			case mm == nil:
				return fail(i+1, "%q: want \"-- compatible-from: K\" (K: the oldest schema version whose binaries run on this one)", l)
			default:
				found, _ = strconv.Atoi(mm[1])
				at, atLen = off, len(line)
			}
		}
		off += len(line)
	}
	switch {
	case at < 0:
		return fail(1, "no \"-- compatible-from: K\" line in the header (see store/postgres/migrations.go)")
	case found > v:
		return fail(1, "compatible-from: %d: newer than the migration's own version %d", found, v)
	}
	sum := sha256.Sum256([]byte(text[:at] + text[at+atLen:]))
	return Migration{Version: v, Name: name, SQL: text, Sum: hex.EncodeToString(sum[:]), CompatibleFrom: found}, nil
}
