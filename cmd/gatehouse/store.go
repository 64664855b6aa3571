package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store/postgres"
)

// storeConfig is the [store] section: where the state that nodes share
// lives.
type storeConfig struct {
	// Backend is "file" (default: this node's state_dir, one node) or
	// "postgres" (shared by every node of the deployment).
	Backend string `toml:"backend"`
	// DSNFile names a file holding the PostgreSQL connection string
	// (postgres://user:password@host/db?sslmode=verify-full…); a file so
	// the password stays out of config.toml. Required for postgres.
	DSNFile string `toml:"dsn_file"`
	// MaxConns bounds the connection pool; default 8.
	MaxConns int32 `toml:"max_conns"`
	// ConnectTimeout bounds one connection attempt; default 5s.
	ConnectTimeout policy.Duration `toml:"connect_timeout"`
	// Node names this node in the records it writes; default the host name.
	Node string `toml:"node"`
	// Audit also puts every audit event into the audit_events table
	// (through the node's spool, as accounting); postgres only. The
	// audit trail ([server] audit) is written as before.
	Audit bool `toml:"audit"`
	// Site groups the VPN nodes that share one WireGuard key and address
	// pool; default "default".
	Site string `toml:"site"`
	// ResyncEvery is how often a node reads what changed in the VPN
	// registry since its last read (rows and deletions, by revision), the
	// safety net under LISTEN/NOTIFY (a missed notification delays a
	// change by at most this); default 30s. The whole registry is read
	// after every (re)connect, hourly, and when the local cache is due.
	ResyncEvery policy.Duration `toml:"resync_every"`
	// EndedSessionRetention is how long a Wi-Fi session's row stays in
	// wifi_sessions after the session ended (counted from its last
	// update); every Wi-Fi node purges older ones hourly, in small batches.
	// Default 720h (30 days); "0s" keeps them forever; postgres only (with
	// backend = "file" setting it is an error, as for the other retentions).
	EndedSessionRetention *policy.Duration `toml:"ended_session_retention"`
	// AccountingRetention is how long an accounting record stays in
	// radius_accounting (counted from received_at); every Wi-Fi node
	// purges older ones hourly, in small batches. Keep it far longer than
	// any outage a node's spool rides out: a record resent after its copy
	// was purged is stored again. Default 2160h (90 days); "0s" keeps them
	// forever; postgres only (an error with backend = "file").
	AccountingRetention *policy.Duration `toml:"accounting_retention"`
	// AuditRetention is how long an audit event stays in audit_events
	// (counted from its time, at); purged as accounting. Default 8760h
	// (365 days); "0s" keeps them forever; postgres only (an error with
	// backend = "file").
	AuditRetention *policy.Duration `toml:"audit_retention"`
}

// The retentions' defaults.
const (
	defaultEndedSessionRetention = 30 * 24 * time.Hour
	defaultAccountingRetention   = 90 * 24 * time.Hour
	defaultAuditRetention        = 365 * 24 * time.Hour
)

// retentionKey is one [store] retention key: its name, its value (nil
// when unset), its default and what "0s" keeps forever.
type retentionKey struct {
	key   string
	value *policy.Duration
	def   time.Duration
	keeps string
}

// retentions lists the [store] retention keys.
func (c *storeConfig) retentions() []retentionKey {
	return []retentionKey{
		{"ended_session_retention", c.EndedSessionRetention, defaultEndedSessionRetention, "ended sessions"},
		{"accounting_retention", c.AccountingRetention, defaultAccountingRetention, "accounting records"},
		{"audit_retention", c.AuditRetention, defaultAuditRetention, "audit events"},
	}
}

// get is the key's value, defaulted; 0 = forever.
func (r retentionKey) get() time.Duration {
	if r.value == nil {
		return r.def
	}
	return r.value.Duration
}

// maintainConfig is what the database's maintenance does for this
// configuration: the three retentions, defaulted.
func (c *storeConfig) maintainConfig() postgres.MaintainConfig {
	r := c.retentions()
	return postgres.MaintainConfig{EndedSessionRetention: r[0].get(), AccountingRetention: r[1].get(), AuditRetention: r[2].get()}
}

// check validates the section; errors name the key.
func (c *storeConfig) check(file string) []string {
	var errs []string
	switch c.Backend {
	case "", "file":
		if c.DSNFile != "" {
			errs = append(errs, fmt.Sprintf("%s: store.dsn_file: only for backend = \"postgres\"", file))
		}
		for _, r := range c.retentions() {
			if r.value != nil {
				errs = append(errs, fmt.Sprintf("%s: store.%s: only for backend = \"postgres\"", file, r.key))
			}
		}
	case "postgres":
		if c.DSNFile == "" {
			errs = append(errs, fmt.Sprintf("%s: store.dsn_file: required for backend = \"postgres\"", file))
		}
	default:
		errs = append(errs, fmt.Sprintf("%s: store.backend: %q: must be file or postgres", file, c.Backend))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Sprintf("%s: store.max_conns: %d: must not be negative", file, c.MaxConns))
	}
	if c.ResyncEvery.Duration < 0 {
		errs = append(errs, fmt.Sprintf("%s: store.resync_every: %v: must be positive", file, c.ResyncEvery.Duration))
	}
	for _, r := range c.retentions() {
		if r.value != nil && r.value.Duration < 0 {
			errs = append(errs, fmt.Sprintf("%s: store.%s: %v: must not be negative (0s keeps %s forever)", file, r.key, r.value.Duration, r.keeps))
		}
	}
	if c.ConnectTimeout.Duration < 0 {
		errs = append(errs, fmt.Sprintf("%s: store.connect_timeout: %v: must be positive", file, c.ConnectTimeout.Duration))
	}
	return errs
}

// defaults fills the node and site names.
func (c *storeConfig) defaults() {
	if c.Backend == "" {
		c.Backend = "file"
	}
	if c.Node == "" {
		c.Node, _ = os.Hostname()
	}
	if c.Site == "" {
		c.Site = "default"
	}
}

// openStore opens the PostgreSQL pool of a postgres configuration (nil for
// file). It does not wait for the server: an outage at start is ridden out.
func openStore(l *loaded, log *slog.Logger) (*postgres.DB, error) {
	c := &l.cfg.Store
	if c.Backend != "postgres" {
		return nil, nil
	}
	b, err := os.ReadFile(c.DSNFile)
	if err != nil {
		return nil, &configError{fmt.Sprintf("%s: store.dsn_file: %v", l.file, err)}
	}
	db, err := postgres.Open(postgres.Config{
		DSN:            strings.TrimSpace(string(b)),
		MaxConns:       c.MaxConns,
		ConnectTimeout: c.ConnectTimeout.Duration,
	}, log)
	if err != nil {
		return nil, &configError{fmt.Sprintf("%s: store.dsn_file %s: %v", l.file, c.DSNFile, err)}
	}
	return db, nil
}

// cmdStore is `gatehouse store migrate|status`.
func cmdStore(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "migrate" && args[0] != "status") {
		return &usageError{"usage: gatehouse store migrate|status [--config FILE]"}
	}
	sub := args[0]
	fs := newFlags("store "+sub, stdout)
	cfgFile := configFlag(fs)
	l, err := parseAndLoad(fs, args[1:], cfgFile)
	if err != nil {
		return err
	}
	if l.cfg.Store.Backend != "postgres" {
		fmt.Fprintf(stdout, "store: file (state_dir %s); nothing to migrate\n", l.cfg.Server.StateDir)
		return nil
	}
	db, err := openStore(l, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if sub == "migrate" {
		ms, err := db.Migrate(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			fmt.Fprintf(stdout, "applied %04d_%s\n", m.Version, m.Name)
		}
	}
	st, err := db.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "store: postgres, schema version %d of %d known", st.Version(), st.Known)
	if len(st.Pending) > 0 {
		fmt.Fprintf(stdout, ", %d pending (gatehouse store migrate, or start gatehouse serve)", len(st.Pending))
		if v := st.Version(); v > 0 {
			fmt.Fprintf(stdout, "; %s", pendingCompat(st.Pending, v))
		}
	}
	if len(st.Ahead) > 0 {
		// Another node's newer binary migrated; this one still runs on it.
		var vs []string
		for _, a := range st.Ahead {
			vs = append(vs, fmt.Sprintf("%d %s (compatible from %d)", a.Version, a.Name, a.CompatibleFrom))
		}
		fmt.Fprintf(stdout, ": ahead of this binary, compatible: upgrade this node (newer: %s)", strings.Join(vs, ", "))
	}
	fmt.Fprintln(stdout)
	return nil
}

// pendingCompat says whether nodes whose binaries know schema v keep
// running once pending is applied (a rolling upgrade), or which migration
// stops them.
func pendingCompat(pending []postgres.Migration, v int) string {
	for _, m := range pending {
		if m.CompatibleFrom > v {
			return fmt.Sprintf("not compatible with schema %d: nodes not yet upgraded refuse the database once %04d_%s is applied (compatible from %d): upgrade every node in a short window",
				v, m.Version, m.Name, m.CompatibleFrom)
		}
	}
	return fmt.Sprintf("compatible with schema %d: nodes not yet upgraded keep running; upgrade them one at a time", v)
}
