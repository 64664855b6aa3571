package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrIncompatibleSchema is wrapped by the errors of a database whose schema
// this binary must not use: newer, and not declared compatible with it, or
// a known migration whose text differs. Retrying does not help; upgrading
// the binary (or restoring the schema) does.
var ErrIncompatibleSchema = errors.New("postgres: database schema incompatible with this binary")

// migrateLock is the advisory lock key that serialises migrations across
// nodes ("gatehous" in ASCII).
const migrateLock int64 = 0x6761746568_6f7573

// Applied is one row of gatehouse_schema_migrations.
type Applied struct {
	Version   int
	Name      string
	Sum       string
	AppliedAt time.Time
	// CompatibleFrom is the migration's declaration (see Migration); 0 when
	// none is stored (NULL: applied by a binary from before the column,
	// and not back-filled yet), which counts as incompatible.
	CompatibleFrom int
}

// Status is the schema state of a database as seen by this binary.
type Status struct {
	Applied []Applied
	Known   int // the newest version this binary ships
	Pending []Migration
	// Ahead lists the applied versions newer than this binary knows. They
	// all declare themselves compatible with it (a database with one that
	// does not is refused): this binary runs on the database as it is, and
	// this node is due for an upgrade.
	Ahead []Applied
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

// addCompatible adds the column of the migrations' declarations to a table
// created before it existed (binaries from before it ignore it).
const addCompatible = `ALTER TABLE gatehouse_schema_migrations ADD COLUMN IF NOT EXISTS compatible_from integer`

// Migrate applies the binary's pending migrations under the advisory lock
// and returns those it applied (none when another node was first, and none
// when the database is ahead of this binary but compatible with it: that is
// logged once per newer version, as a WARN telling to upgrade this node).
// It also records this binary's declarations for the applied versions that
// have none (applied before the column existed).
func (db *DB) Migrate(ctx context.Context) ([]Migration, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	return db.migrate(ctx, ms)
}

// migrate is Migrate with the binary's migrations ms (a test plays an
// older or a newer binary with another list).
func (db *DB) migrate(ctx context.Context, ms []Migration) ([]Migration, error) {
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
	// The column is added once: an ALTER TABLE on every reconnect would
	// take the table's lock (and need its owner) each time.
	if has, err := hasCompatColumn(ctx, conn.Conn()); err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	} else if !has {
		if _, err := conn.Exec(ctx, addCompatible); err != nil {
			return nil, fmt.Errorf("postgres: migrate: %w", err)
		}
	}
	st, err := status(ctx, conn.Conn(), ms)
	if err != nil {
		return nil, err
	}
	if err := db.backfill(ctx, conn.Conn(), st, ms); err != nil {
		return nil, err
	}
	if len(st.Ahead) > 0 {
		if v := int64(st.Version()); db.aheadWarned.Swap(v) != v {
			db.logger().Warn("postgres: the database schema is ahead of this binary, and compatible with it: this node runs; upgrade gatehouse on this node",
				"version", st.Version(), "known", st.Known, "ahead", versions(st.Ahead))
		}
		return nil, nil
	}
	for _, m := range st.Pending {
		err := pgx.BeginFunc(ctx, conn.Conn(), func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO gatehouse_schema_migrations (version, name, sha256, compatible_from) VALUES ($1, $2, $3, $4)",
				m.Version, m.Name, m.Sum, m.CompatibleFrom)
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

// backfill stores ms's declarations for the applied versions this binary
// knows that have none. A stored declaration is never changed.
func (db *DB) backfill(ctx context.Context, c *pgx.Conn, st *Status, ms []Migration) error {
	var vs, cfs []int32
	for _, a := range st.Applied {
		if a.CompatibleFrom == 0 && a.Version <= len(ms) {
			vs, cfs = append(vs, int32(a.Version)), append(cfs, int32(ms[a.Version-1].CompatibleFrom))
		}
	}
	if len(vs) == 0 {
		return nil
	}
	ct, err := c.Exec(ctx, `UPDATE gatehouse_schema_migrations AS s SET compatible_from = x.cf
		FROM unnest($1::integer[], $2::integer[]) AS x(version, cf)
		WHERE s.version = x.version AND s.compatible_from IS NULL`, vs, cfs)
	if err != nil {
		return fmt.Errorf("postgres: migrate: compatible_from: %w", err)
	}
	if ct.RowsAffected() > 0 {
		db.logger().Info("postgres: schema compatibility declarations recorded", "versions", ct.RowsAffected())
	}
	return nil
}

// Status reads the applied migrations and checks them against the binary's.
func (db *DB) Status(ctx context.Context) (*Status, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	return db.status(ctx, ms)
}

// status is Status with the binary's migrations ms.
func (db *DB) status(ctx context.Context, ms []Migration) (*Status, error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: status: %w", err)
	}
	defer conn.Release()
	return status(ctx, conn.Conn(), ms)
}

// status reads the applied migrations and checks them against ms, the
// migrations of a binary: a known version must match ms's (same SHA-256),
// no version may be missing, and a version newer than ms knows must
// declare itself compatible with the newest of ms (compatible_from <=
// len(ms)); then Ahead lists them and nothing is pending. The error of a
// refusal names the versions.
func status(ctx context.Context, c *pgx.Conn, ms []Migration) (*Status, error) {
	st := &Status{Known: len(ms)}
	var exists bool
	if err := c.QueryRow(ctx, "SELECT to_regclass('gatehouse_schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, fmt.Errorf("postgres: status: %w", err)
	}
	hasCompat, err := hasCompatColumn(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("postgres: status: %w", err)
	}
	if exists {
		compat := "NULL::integer"
		if hasCompat {
			compat = "compatible_from"
		}
		rows, err := c.Query(ctx, "SELECT version, name, sha256, applied_at, "+compat+" FROM gatehouse_schema_migrations ORDER BY version")
		if err != nil {
			return nil, fmt.Errorf("postgres: status: %w", err)
		}
		st.Applied, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Applied, error) {
			var a Applied
			var cf *int32
			err := r.Scan(&a.Version, &a.Name, &a.Sum, &a.AppliedAt, &cf)
			if cf != nil {
				a.CompatibleFrom = int(*cf)
			}
			return a, err
		})
		if err != nil {
			return nil, fmt.Errorf("postgres: status: %w", err)
		}
	}
	var refused []string
	for i, a := range st.Applied {
		switch {
		case a.Version != i+1:
			return st, fmt.Errorf("postgres: schema migration %d is missing from the database (next applied: %d %s)", i+1, a.Version, a.Name)
		case a.Version <= len(ms) && ms[i].Sum != a.Sum:
			return st, fmt.Errorf("%w: schema migration %d (%s) in the database differs from this binary's", ErrIncompatibleSchema, a.Version, a.Name)
		case a.Version <= len(ms):
		case a.CompatibleFrom == 0:
			refused = append(refused, fmt.Sprintf("%d (%s) declares no compatibility", a.Version, a.Name))
		case a.CompatibleFrom > len(ms):
			refused = append(refused, fmt.Sprintf("%d (%s) compatible from %d", a.Version, a.Name, a.CompatibleFrom))
		default:
			st.Ahead = append(st.Ahead, a)
		}
	}
	if len(refused) > 0 {
		return st, fmt.Errorf("%w: schema version %d is newer than this binary knows (%d) and not compatible with it: migration %s: upgrade gatehouse on this node",
			ErrIncompatibleSchema, st.Version(), len(ms), strings.Join(refused, ", migration "))
	}
	if len(st.Ahead) == 0 {
		st.Pending = ms[len(st.Applied):]
	}
	return st, nil
}

// hasCompatColumn says whether gatehouse_schema_migrations has its
// compatible_from column (false too when the table does not exist).
func hasCompatColumn(ctx context.Context, c *pgx.Conn) (bool, error) {
	var has bool
	err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_attribute
		WHERE attrelid = to_regclass('gatehouse_schema_migrations') AND attname = 'compatible_from' AND NOT attisdropped)`).Scan(&has)
	return has, err
}

// versions lists as's versions.
func versions(as []Applied) []int {
	vs := make([]int, len(as))
	for i, a := range as {
		vs[i] = a.Version
	}
	return vs
}
