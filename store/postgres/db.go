package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Config selects and sizes the database connection. The zero value is not
// usable: DSN is required.
type Config struct {
	// DSN is a libpq connection string or URL (postgres://user@host/db).
	// It may hold a password: it is never logged nor put in an error.
	DSN string
	// MaxConns bounds the pool; 0 means 8.
	MaxConns int32
	// ConnectTimeout bounds one connection attempt; 0 means 5s.
	ConnectTimeout time.Duration
}

// DB is an open pool. Open connects lazily: a database that is down at
// start is an outage to ride out, not a reason to fail.
type DB struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	// aheadWarned is the newest schema version, ahead of this binary, that
	// Migrate warned about (0: none): once per version and process, not
	// on every reconnect.
	aheadWarned atomic.Int64
}

// Open validates cfg and builds the pool; it does not wait for the server.
func Open(cfg Config, log *slog.Logger) (*DB, error) {
	if cfg.DSN == "" {
		return nil, errors.New("postgres: dsn is empty")
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx's parse errors may quote the DSN, password included.
		return nil, errors.New("postgres: dsn: cannot be parsed (the text is not repeated here: it may hold a password)")
	}
	pc.MaxConns = cfg.MaxConns
	if pc.MaxConns <= 0 {
		pc.MaxConns = 8
	}
	pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	if pc.ConnConfig.ConnectTimeout <= 0 {
		pc.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "gatehouse"
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: pool: %w", err)
	}
	return &DB{pool: pool, log: log}, nil
}

// Close closes every connection of the pool.
func (db *DB) Close() { db.pool.Close() }

// Ping reports whether the server answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Pool is the underlying pool, for the store implementations.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }
