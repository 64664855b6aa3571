package postgres

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrateLock is the advisory lock key that serialises migrations across
// nodes ("gatehous" in ASCII).
const migrateLock int64 = 0x6761746568_6f7573

// Migration is one numbered schema change shipped in the binary.
type Migration struct {
	Version int
	Name    string // file name without the number and .sql
	SQL     string
	Sum     string // SHA-256 of SQL, hex
}

// Migrations lists the binary's migrations in order.
func Migrations() ([]Migration, error) {
	ents, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("postgres: migrations: %w", err)
	}
	var ms []Migration
	for _, e := range ents {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("postgres: migrations: %s: want NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("postgres: migrations: %w", err)
		}
		sum := sha256.Sum256(b)
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b), Sum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := range ms {
		if ms[i].Version != i+1 {
			return nil, fmt.Errorf("postgres: migrations: version %d missing or repeated", i+1)
		}
	}
	return ms, nil
}

// Applied is one row of gatehouse_schema_migrations.
type Applied struct {
	Version   int
	Name      string
	Sum       string
	AppliedAt time.Time
}

// Status is the schema state of a database as seen by this binary.
type Status struct {
	Applied []Applied
	Known   int // the newest version this binary ships
	Pending []Migration
}

// Version is the newest applied version, 0 for an empty database.
func (s *Status) Version() int {
	if len(s.Applied) == 0 {
		return 0
	}
	return s.Applied[len(s.Applied)-1].Version
}

const createTable = `CREATE TABLE IF NOT EXISTS gatehouse_schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	sha256     text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now())`

// Migrate applies the binary's pending migrations under the advisory lock
// and returns those it applied (none when another node was first).
func (db *DB) Migrate(ctx context.Context) ([]Migration, error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLock); err != nil {
		return nil, fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLock)
	if _, err := conn.Exec(ctx, createTable); err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	st, err := status(ctx, conn.Conn())
	if err != nil {
		return nil, err
	}
	for _, m := range st.Pending {
		err := pgx.BeginFunc(ctx, conn.Conn(), func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO gatehouse_schema_migrations (version, name, sha256) VALUES ($1, $2, $3)", m.Version, m.Name, m.Sum)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("postgres: migrate: %04d_%s: %w", m.Version, m.Name, err)
		}
		if db.log != nil {
			db.log.Info("postgres: schema migration applied", "version", m.Version, "name", m.Name)
		}
	}
	return st.Pending, nil
}

// Status reads the applied migrations and checks them against the binary's.
func (db *DB) Status(ctx context.Context) (*Status, error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: status: %w", err)
	}
	defer conn.Release()
	return status(ctx, conn.Conn())
}

func status(ctx context.Context, c *pgx.Conn) (*Status, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	st := &Status{Known: len(ms)}
	var exists bool
	if err := c.QueryRow(ctx, "SELECT to_regclass('gatehouse_schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, fmt.Errorf("postgres: status: %w", err)
	}
	if exists {
		rows, err := c.Query(ctx, "SELECT version, name, sha256, applied_at FROM gatehouse_schema_migrations ORDER BY version")
		if err != nil {
			return nil, fmt.Errorf("postgres: status: %w", err)
		}
		st.Applied, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Applied, error) {
			var a Applied
			err := r.Scan(&a.Version, &a.Name, &a.Sum, &a.AppliedAt)
			return a, err
		})
		if err != nil {
			return nil, fmt.Errorf("postgres: status: %w", err)
		}
	}
	for i, a := range st.Applied {
		if a.Version > len(ms) {
			return st, fmt.Errorf("postgres: schema version %d is newer than this binary knows (%d): upgrade gatehouse on this node", a.Version, len(ms))
		}
		if a.Version != i+1 || ms[i].Sum != a.Sum {
			return st, fmt.Errorf("postgres: schema migration %d (%s) in the database differs from this binary's", a.Version, a.Name)
		}
	}
	st.Pending = ms[len(st.Applied):]
	return st, nil
}
