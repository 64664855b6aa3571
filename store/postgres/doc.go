// Package postgres is gatehouse's PostgreSQL state backend (for more than
// one node): a pgx connection pool and the versioned schema, embedded in
// the binary as numbered SQL files under migrations/ and applied at start.
//
// Migrations are idempotent and safe when several nodes start at once: the
// runner holds a session advisory lock while it reads the applied versions
// and applies the missing ones, each in its own transaction together with
// its row in gatehouse_schema_migrations. A shipped migration is never
// edited: the runner records each file's SHA-256 and refuses a database
// whose applied migration differs from the binary's, or that misses one.
// Each migration declares (-- compatible-from: K, stored in the table) the
// oldest schema whose binaries still run on it: a binary runs on a newer
// schema iff every version it does not know declares it compatible
// (migrations.go has the rule), and refuses it otherwise.
package postgres
