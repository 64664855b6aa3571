// Package pgstore keeps the VPN peer registry of a site in PostgreSQL
// (table vpn_peers of store/postgres's schema), shared by every node of
// the site, and replicates changes between the nodes.
//
// The database guarantees that an address, an IPv6 address and a public
// key are leased once per site: a Save that would lease one twice fails
// with a *vpn.ConflictError. Every change is announced in its transaction
// with pg_notify('gatehouse_vpn', site+" "+fingerprint); Run LISTENs on a
// dedicated connection and applies each change to the local server, runs a
// resync every ResyncEvery (a missed notification delays a change, never
// loses it: see resync.go; it reads only what changed, and the whole
// registry after every (re)connect and every FullResyncEvery), holds the
// site's re-validation lease (a session advisory lock: one node cuts each
// peer once) and keeps a local cache of the registry so that a node
// restarted while PostgreSQL is down still configures every peer. SaveNew
// counts an identity's devices and inserts its new one atomically across
// nodes (vpn.LimitedStore).
package pgstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/vpn"
)

// Channel is the LISTEN/NOTIFY channel of registry changes.
const Channel = "gatehouse_vpn"

// Config places a node in its site. The zero value is the site "default",
// no cache, resync every 30s.
type Config struct {
	// Site names the nodes sharing one WireGuard key and address pool.
	Site string
	// Node names this node in the rows it writes.
	Node string
	// Cache is a local file holding the last registry read from the
	// database (empty: none). Load falls back to it when the database
	// cannot be reached.
	Cache string
	// ResyncEvery is the period of the resync (default 30s): a read of
	// what changed since the last read (rows and tombstones stamped by
	// schema 2), which costs nothing much when little changed.
	ResyncEvery time.Duration
	// FullResyncEvery is the period of the full resync, a safety net
	// that reads the whole registry (default 1h; one also runs after
	// every (re)connect).
	FullResyncEvery time.Duration
	// TombstoneRetention is how long the tombstones of deleted peers are
	// kept for the incremental resync of other nodes (default 24h); the
	// re-validation lease holder purges older ones.
	TombstoneRetention time.Duration
	// CacheEvery bounds how often the cache is rewritten (after a resync
	// that saw changes; default 5m: a large registry makes a large file).
	CacheEvery time.Duration
	// OpTimeout bounds one statement of Load, Save, Remove (default 10s).
	OpTimeout time.Duration
}

// Store is the PostgreSQL vpn.Store of one site. Make it with New.
type Store struct {
	db  *postgres.DB
	cfg Config
	log *slog.Logger

	available    atomic.Bool  // the listener is connected
	leader       atomic.Bool  // this node holds the site's re-validation lease
	changes      atomic.Int64 // bumped by every change seen; the cache is rewritten when it moved
	lastErr      atomic.Pointer[string]
	cacheMu      sync.Mutex // serializes cache writes; guards the two below
	cacheGen     int64      // changes when the cache was last written
	cacheWritten bool
	cacheAt      time.Time // when it was last written
}

// New returns the store of cfg.Site on db; it starts nothing.
func New(db *postgres.DB, cfg Config, log *slog.Logger) *Store {
	if cfg.Site == "" {
		cfg.Site = "default"
	}
	if cfg.ResyncEvery <= 0 {
		cfg.ResyncEvery = 30 * time.Second
	}
	if cfg.FullResyncEvery <= 0 {
		cfg.FullResyncEvery = time.Hour
	}
	if cfg.TombstoneRetention <= 0 {
		cfg.TombstoneRetention = 24 * time.Hour
	}
	if cfg.CacheEvery <= 0 {
		cfg.CacheEvery = 5 * time.Minute
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 10 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{db: db, cfg: cfg, log: log}
}

// Leader reports whether this node holds its site's re-validation lease.
func (st *Store) Leader() bool { return st.leader.Load() }

// Revalidates reports whether this node should re-validate its peers now:
// while it holds the lease, and while the database cannot be reached (then
// no node holds it, and each node cuts what it must on its own device;
// the lease holder writes the cuts once the database is back).
func (st *Store) Revalidates() bool { return st.leader.Load() || !st.available.Load() }

// Available returns nil while the database answers (the listener is
// connected), else why not.
func (st *Store) Available() error {
	if st.available.Load() {
		return nil
	}
	if e := st.lastErr.Load(); e != nil {
		return fmt.Errorf("%w: %s", vpn.ErrUnavailable, *e)
	}
	return fmt.Errorf("%w: not connected yet", vpn.ErrUnavailable)
}

func (st *Store) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), st.cfg.OpTimeout)
}

// wrap classifies err: a statement the server refused is a plain error;
// anything else (no connection, timeout) is vpn.ErrUnavailable.
func wrap(op string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			switch pe.ConstraintName {
			case "vpn_peers_address_key", "vpn_peers_address6_key":
				return &vpn.ConflictError{Field: "address"}
			case "vpn_peers_public_key_key":
				return &vpn.ConflictError{Field: "public_key"}
			}
		case "42P01": // undefined_table: schema not migrated yet
			return fmt.Errorf("pgstore: %s: %w: schema not applied yet", op, vpn.ErrUnavailable)
		}
		switch pe.Code[:2] {
		case "08", "53", "57", "58": // connection, resources, shutdown, system
			return fmt.Errorf("pgstore: %s: %w: %w", op, vpn.ErrUnavailable, err)
		}
		return fmt.Errorf("pgstore: %s: %w", op, err)
	}
	return fmt.Errorf("pgstore: %s: %w: %w", op, vpn.ErrUnavailable, err)
}

const upsert = `INSERT INTO vpn_peers
	(site, fingerprint, public_key, address, address6, identity_key, not_after, suspended, format, record, node, chain, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())
	ON CONFLICT (site, fingerprint) DO UPDATE SET
	public_key = EXCLUDED.public_key, address = EXCLUDED.address, address6 = EXCLUDED.address6,
	identity_key = EXCLUDED.identity_key, not_after = EXCLUDED.not_after, suspended = EXCLUDED.suspended,
	format = EXCLUDED.format, record = EXCLUDED.record, chain = EXCLUDED.chain, node = EXCLUDED.node, quarantine = NULL,
	updated_at = now()`

// Save implements vpn.Store: one transaction upserts the row and notifies.
func (st *Store) Save(r *vpn.PeerRecord) error {
	return st.save(r, nil)
}

// SaveNew implements vpn.LimitedStore. The transaction takes a
// transaction-scoped advisory lock on the site and identity before it
// counts: every node's enrollment of one identity passes through it one
// at a time, so the count and the insert are one atomic step across nodes
// (two nodes can no longer both see room for one more device). The lock
// is released at commit; other identities are not held up.
func (st *Store) SaveNew(r *vpn.PeerRecord, limit int) error {
	return st.save(r, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", identityKey(st.cfg.Site, r.IdentityKey)); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM vpn_peers
			WHERE site = $1 AND identity_key = $2 AND fingerprint <> $3 AND quarantine IS NULL
			AND (not_after > now() OR not_after = $4)`,
			st.cfg.Site, r.IdentityKey, r.Fingerprint, time.Time{}).Scan(&n); err != nil {
			return err
		}
		if n >= limit {
			return &vpn.LimitError{Count: n}
		}
		return nil
	})
}

// identityKey is the advisory lock key of one identity's enrollments.
// A collision of two identities only makes them wait for each other.
func identityKey(site, identity string) int64 {
	h := fnv.New64a()
	h.Write([]byte("gatehouse vpn identity " + site + "\x00" + identity))
	return int64(h.Sum64())
}

// save upserts r and notifies in one transaction, after check (if any)
// in the same transaction allowed it.
func (st *Store) save(r *vpn.PeerRecord, check func(context.Context, pgx.Tx) error) error {
	// The chain goes into its own column, binary: in the JSON it would
	// be base64 and most of the record (and of the load time).
	c := *r
	c.Chain = nil
	b, err := vpn.EncodeRecord(&c)
	if err != nil {
		return err
	}
	chain := packChain(r.Chain)
	var a6 any
	if r.Address6.IsValid() {
		a6 = r.Address6.String()
	}
	ctx, cancel := st.ctx()
	defer cancel()
	err = pgx.BeginFunc(ctx, st.db.Pool(), func(tx pgx.Tx) error {
		if check != nil {
			if err := check(ctx, tx); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, upsert, st.cfg.Site, r.Fingerprint, r.PublicKey.String(), r.Address.String(), a6,
			r.IdentityKey, r.NotAfter, r.Suspended != nil, vpn.RecordVersion, b, st.cfg.Node, chain); err != nil {
			return err
		}
		return st.notify(ctx, tx, r.Fingerprint)
	})
	var le *vpn.LimitError
	if errors.As(err, &le) {
		return le
	}
	if err != nil {
		return wrap("save peer", err)
	}
	st.changes.Add(1)
	return nil
}

func (st *Store) notify(ctx context.Context, tx pgx.Tx, fp string) error {
	_, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", Channel, st.cfg.Site+" "+fp)
	return err
}

// Remove implements vpn.Store.
func (st *Store) Remove(fp string) error {
	ctx, cancel := st.ctx()
	defer cancel()
	err := pgx.BeginFunc(ctx, st.db.Pool(), func(tx pgx.Tx) error {
		ct, err := tx.Exec(ctx, "DELETE FROM vpn_peers WHERE site = $1 AND fingerprint = $2", st.cfg.Site, fp)
		if err != nil || ct.RowsAffected() == 0 {
			return err
		}
		return st.notify(ctx, tx, fp)
	})
	if err != nil {
		return wrap("remove peer", err)
	}
	st.changes.Add(1)
	return nil
}

// Quarantine implements vpn.Store: the row stays (its leases stay held)
// with why in its quarantine column; Load skips it. An operator deletes
// or repairs it.
func (st *Store) Quarantine(fp, why string) error {
	ctx, cancel := st.ctx()
	defer cancel()
	err := pgx.BeginFunc(ctx, st.db.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "UPDATE vpn_peers SET quarantine = $3, node = $4, updated_at = now() WHERE site = $1 AND fingerprint = $2",
			st.cfg.Site, fp, why, st.cfg.Node); err != nil {
			return err
		}
		return st.notify(ctx, tx, fp)
	})
	if err != nil {
		return wrap("quarantine peer", err)
	}
	return nil
}

// Get returns the record of fp, nil if there is none (or it is
// quarantined).
func (st *Store) Get(ctx context.Context, fp string) (*vpn.PeerRecord, error) {
	var b, chain []byte
	err := st.db.Pool().QueryRow(ctx, "SELECT record, chain FROM vpn_peers WHERE site = $1 AND fingerprint = $2 AND quarantine IS NULL",
		st.cfg.Site, fp).Scan(&b, &chain)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("get peer", err)
	}
	return decode(b, chain)
}

// decode reads a row's record and chain.
func decode(b, chain []byte) (*vpn.PeerRecord, error) {
	r, err := vpn.DecodeRecord(b)
	if err != nil {
		return nil, err
	}
	for len(chain) > 0 {
		if len(chain) < 4 || int(binary.BigEndian.Uint32(chain)) > len(chain)-4 {
			return nil, errors.New("pgstore: chain column damaged")
		}
		n := int(binary.BigEndian.Uint32(chain))
		r.Chain = append(r.Chain, chain[4:4+n:4+n])
		chain = chain[4+n:]
	}
	return r, nil
}

// packChain is the chain column: each certificate as a 4-byte big-endian
// length and its bytes.
func packChain(chain [][]byte) []byte {
	var b []byte
	for _, c := range chain {
		b = binary.BigEndian.AppendUint32(b, uint32(len(c)))
		b = append(b, c...)
	}
	return b
}

// Load implements vpn.Store. Rows that do not decode (a newer node's
// format, damage) are listed in bad and left in place: other nodes may read
// them. When the database cannot be reached, Load returns the local cache
// (logged at ERROR), or an empty registry if there is none: the node then
// serves Wi-Fi and whatever it cached, and Run replaces it as soon as the
// database answers.
func (st *Store) Load() ([]*vpn.PeerRecord, []vpn.Quarantined, error) {
	ctx, cancel := context.WithTimeout(context.Background(), max(st.cfg.OpTimeout, time.Minute))
	defer cancel()
	recs, bad, err := st.load(ctx)
	if err == nil {
		return recs, bad, nil
	}
	if !errors.Is(err, vpn.ErrUnavailable) {
		return nil, nil, err
	}
	cached, cerr := st.readCache()
	switch {
	case cerr != nil:
		st.log.Error("pgstore: database unavailable and no usable local cache: starting with no VPN peers until it answers",
			"err", err, "cache_err", cerr)
		return nil, nil, nil
	default:
		st.log.Error("pgstore: database unavailable: VPN peers restored from the local cache; enrollment is refused until the database answers",
			"err", err, "peers", len(cached), "cache", st.cfg.Cache)
		return cached, nil, nil
	}
}

// load reads the site's registry; rows are decoded in parallel while
// they arrive.
func (st *Store) load(ctx context.Context) ([]*vpn.PeerRecord, []vpn.Quarantined, error) {
	return st.loadWhere(ctx, st.db.Pool(), "")
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// LoadSome implements vpn.PartialLoader: the records of fps (those that
// exist), for a restart that restores recently active peers first.
func (st *Store) LoadSome(fps []string) ([]*vpn.PeerRecord, error) {
	ctx, cancel := st.ctx()
	defer cancel()
	recs, _, err := st.loadWhere(ctx, st.db.Pool(), " AND fingerprint = ANY($2)", fps)
	return recs, err
}

func (st *Store) loadWhere(ctx context.Context, q querier, and string, args ...any) ([]*vpn.PeerRecord, []vpn.Quarantined, error) {
	rows, err := q.Query(ctx, "SELECT fingerprint, record, chain FROM vpn_peers WHERE site = $1 AND quarantine IS NULL"+and,
		append([]any{st.cfg.Site}, args...)...)
	if err != nil {
		return nil, nil, wrap("load peers", err)
	}
	defer rows.Close()
	type row struct {
		fp      string
		rec, ch []byte
		r       *vpn.PeerRecord
		why     string
	}
	const batch = 512
	work := make(chan []row, 4)
	var mu sync.Mutex
	var done [][]row
	workers := max(1, min(runtime.GOMAXPROCS(0), 8))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				for i := range b {
					r, err := decode(b[i].rec, b[i].ch)
					switch {
					case err != nil:
						b[i].why = err.Error()
					case r.Fingerprint != b[i].fp:
						b[i].why = "fingerprint does not match the row"
					default:
						b[i].r = r
					}
					b[i].rec, b[i].ch = nil, nil
				}
				mu.Lock()
				done = append(done, b)
				mu.Unlock()
			}
		}()
	}
	cur := make([]row, 0, batch)
	var scanErr error
	for rows.Next() {
		var x row
		// The raw values are only valid until Next: copy them.
		var rec, ch []byte
		if scanErr = rows.Scan(&x.fp, &rec, &ch); scanErr != nil {
			break
		}
		x.rec, x.ch = bytes.Clone(rec), bytes.Clone(ch)
		cur = append(cur, x)
		if len(cur) == batch {
			work <- cur
			cur = make([]row, 0, batch)
		}
	}
	if len(cur) > 0 {
		work <- cur
	}
	close(work)
	wg.Wait()
	if scanErr == nil {
		scanErr = rows.Err()
	}
	if scanErr != nil {
		return nil, nil, wrap("load peers", scanErr)
	}
	var recs []*vpn.PeerRecord
	var bad []vpn.Quarantined
	for _, b := range done {
		for _, x := range b {
			if x.r == nil {
				bad = append(bad, vpn.Quarantined{Name: "vpn_peers " + st.cfg.Site + " " + x.fp, Why: x.why})
				continue
			}
			recs = append(recs, x.r)
		}
	}
	return recs, bad, nil
}
