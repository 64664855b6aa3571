package pgstore

import (
	"context"
	"errors"
	"hash/fnv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/vpn"
)

// Target is what Run keeps in step with the database: *vpn.Server.
type Target interface {
	Apply(p *vpn.PeerRecord, asOf time.Time)
	Forget(fp string, asOf time.Time)
	Sync(recs []*vpn.PeerRecord, asOf time.Time) (changed, removed int)
	// TriggerRevalidate asks for a re-validation soon (this node just
	// took the lease: the cuts made during an outage are written).
	TriggerRevalidate()
}

// leaseKey is the advisory lock key of site's re-validation lease.
func leaseKey(site string) int64 {
	h := fnv.New64a()
	h.Write([]byte("gatehouse vpn revalidation " + site))
	return int64(h.Sum64())
}

// Run keeps t in step with the database until ctx is done: it connects a
// dedicated connection (retrying with backoff: an outage is ridden out),
// applies pending schema migrations, LISTENs, resyncs in full, then
// applies every notification of its site and resyncs every ResyncEvery
// (incrementally: what changed since the last read; in full every
// FullResyncEvery and when the cache is due).
// While connected it holds (or keeps trying for) the site's re-validation
// lease. It returns nil when ctx is done.
func (st *Store) Run(ctx context.Context, t Target) error {
	backoff := 250 * time.Millisecond
	down := false
	defer st.flushCache()
	for ctx.Err() == nil {
		connected, err := st.session(ctx, t)
		st.available.Store(false)
		st.leader.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			backoff = 250 * time.Millisecond
		}
		msg := err.Error()
		st.lastErr.Store(&msg)
		if !down {
			if errors.Is(err, postgres.ErrIncompatibleSchema) {
				st.log.Error("pgstore: the database schema is incompatible with this binary: connected VPN peers keep working, but changes made on other nodes (enrollments, removals, revocations) are not applied here and enrollment is refused until gatehouse on this node is upgraded",
					"err", err)
			} else {
				st.log.Error("pgstore: database unavailable: connected VPN peers keep working, enrollment is refused; retrying",
					"err", err)
			}
			down = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
		if connected {
			down = false // log the next failure again after a good session
		}
	}
	return nil
}

// session runs one connection's life; connected says it got as far as
// LISTEN.
func (st *Store) session(ctx context.Context, t Target) (connected bool, err error) {
	cc := st.db.Pool().Config().ConnConfig.Copy()
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if ms, err := st.db.Migrate(ctx); err != nil {
		return false, err
	} else if len(ms) > 0 {
		st.log.Info("pgstore: schema migrated", "applied", len(ms))
	}
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return false, err
	}
	st.available.Store(true)
	st.lastErr.Store(nil)
	st.log.Info("pgstore: connected: following the VPN registry", "site", st.cfg.Site)
	cursor, err := st.resync(ctx, t)
	if err != nil {
		return true, err
	}
	next := time.Now().Add(st.cfg.ResyncEvery)
	nextFull := time.Now().Add(st.cfg.FullResyncEvery)
	key := leaseKey(st.cfg.Site)
	for {
		if !st.leader.Load() {
			var got bool
			if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got); err != nil {
				return true, err
			}
			if got {
				st.leader.Store(true)
				st.log.Info("pgstore: this node now re-validates the site's VPN peers", "site", st.cfg.Site)
				t.TriggerRevalidate()
			}
		}
		wait := min(time.Until(next), 2*time.Second)
		wctx, cancel := context.WithTimeout(ctx, max(wait, time.Millisecond))
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true, nil
		case err != nil && errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// A quiet period: check the connection is alive.
			if err := conn.Ping(ctx); err != nil {
				return true, err
			}
		case err != nil:
			return true, err
		default:
			if err := st.follow(ctx, t, n.Payload); err != nil {
				return true, err
			}
		}
		if !time.Now().Before(next) {
			var err error
			if full := !time.Now().Before(nextFull); full || st.cacheDue() {
				cursor, err = st.resync(ctx, t)
				if full {
					nextFull = time.Now().Add(st.cfg.FullResyncEvery)
					if err == nil && st.leader.Load() {
						if perr := st.purgeTombstones(ctx); perr != nil {
							st.log.Warn("pgstore: purge of old tombstones failed; retried at the next full resync", "err", perr)
						}
					}
				}
			} else {
				cursor, err = st.resyncSince(ctx, t, cursor)
			}
			if err != nil {
				return true, err
			}
			next = time.Now().Add(st.cfg.ResyncEvery)
		}
	}
}

// follow applies one notification ("site fingerprint").
func (st *Store) follow(ctx context.Context, t Target, payload string) error {
	site, fp, ok := strings.Cut(payload, " ")
	if !ok || site != st.cfg.Site {
		return nil
	}
	asOf := time.Now()
	r, err := st.Get(ctx, fp)
	if err != nil {
		if errors.Is(err, vpn.ErrUnavailable) {
			return err
		}
		st.log.Error("pgstore: replicated peer unreadable; skipped", "fingerprint", fp, "err", err)
		return nil
	}
	if r == nil {
		t.Forget(fp, asOf)
	} else {
		t.Apply(r, asOf)
	}
	st.changes.Add(1)
	return nil
}

// flushCache writes the cache at shutdown if it missed changes.
func (st *Store) flushCache() {
	if st.cfg.Cache == "" {
		return
	}
	gen := st.changes.Load()
	st.cacheMu.Lock()
	current := st.cacheWritten && st.cacheGen == gen
	st.cacheMu.Unlock()
	if current {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, _, err := st.load(ctx)
	if err != nil {
		return // the database is down: the cache keeps what it had
	}
	st.cacheMu.Lock()
	st.cacheWritten = false // write now, whatever CacheEvery says
	st.cacheMu.Unlock()
	st.writeCacheIfChanged(gen, recs)
}
