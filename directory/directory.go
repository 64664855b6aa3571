package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// backend is one directory source: an LDIF file or an LDAP server pool.
type backend interface {
	// lookup runs the query for one identity, uncached. ctx carries the
	// lookup's deadline.
	lookup(ctx context.Context, kind, filter string) (dn string, groups []string, err error)
	check(ctx context.Context) error
	run(ctx context.Context) error
	reload() error
	close()
}

// Directory answers policy's directory lookups from an LDIF file or an LDAP
// server, with a cache. It satisfies policy.Directory. It is safe for
// concurrent use.
type Directory struct {
	s        *settings
	logger   *slog.Logger
	be       backend
	cache    *cache // nil when caching is disabled
	flights  flights
	stats    counters
	wg       sync.WaitGroup   // in-flight background lookups
	bgMu     sync.RWMutex     // orders wg.Add (read side) before Close's Wait
	queryObs DurationObserver // nil = none; set before the first lookup
	closed   bool             // guarded by bgMu
}

// counters are the Directory's statistics, updated atomically.
type counters struct {
	hits, misses, stale, queries, errors atomic.Uint64
}

// Stats is a snapshot of a Directory's counters.
type Stats struct {
	Hits    uint64 // lookups answered from the cache
	Misses  uint64 // lookups that went to the backend (or joined one that did)
	Stale   uint64 // lookups answered from an expired entry during an outage
	Queries uint64 // queries sent to the server (searches), or file evaluations
	Errors  uint64 // lookups that failed (outage, ambiguous, bad input)
	Entries int    // answers currently cached
}

// New validates cfg and returns a Directory. It starts nothing and connects
// to nothing; the file backend reads its file. logger may be nil.
func New(cfg Config, logger *slog.Logger) (*Directory, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	d := &Directory{s: s, logger: logger}
	if s.cacheTTL > 0 {
		keep := max(s.cacheTTL, s.negativeTTL)
		if s.serveStale {
			keep = max(keep, s.staleMaxAge)
		}
		d.cache = newCache(s.cacheSize, keep)
		d.cache.clock = func() time.Time { return s.now() }
	}
	switch cfg.Backend {
	case "file":
		fb, err := newFileBackend(s, logger, &d.stats.queries, d.FlushCache)
		if err != nil {
			return nil, err
		}
		d.be = fb
	case "ldap":
		lb, err := newLDAPBackend(s, logger, &d.stats.queries)
		if err != nil {
			return nil, err
		}
		d.be = lb
	}
	return d, nil
}

// Run runs background work — health probes and reconnection for LDAP,
// change polling for the file — until ctx is done, then closes connections
// and returns after all its goroutines have exited.
func (d *Directory) Run(ctx context.Context) error {
	err := d.be.run(ctx)
	d.Close()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// Close closes the server connections; later lookups fail as unavailable.
// It waits for lookups running in the background.
func (d *Directory) Close() {
	d.bgMu.Lock()
	d.closed = true
	d.bgMu.Unlock()
	d.be.close()
	d.wg.Wait()
}

// Lookup implements policy.Directory: it returns the DN of the one entry
// matching the identity and the DNs of all its groups, nested ones
// included, as the server spells them. No entry is ("", nil, nil); more
// than one entry is an error wrapping ErrAmbiguous; an outage is an error
// whose Unavailable method returns true. Answers are cached.
func (d *Directory) Lookup(ctx context.Context, kind string, fields map[string]string) (string, []string, error) {
	return d.lookup(ctx, kind, fields, true)
}

// LookupNoCache is Lookup without reading the cache (for `gatehouse explain
// --no-cache`): it always asks the backend and never serves a stale answer;
// its answer still refreshes the cache.
func (d *Directory) LookupNoCache(ctx context.Context, kind string, fields map[string]string) (string, []string, error) {
	return d.lookup(ctx, kind, fields, false)
}

func (d *Directory) template(kind string) (*template, error) {
	switch kind {
	case "user":
		return d.s.userTmpl, nil
	case "device":
		return d.s.deviceTmpl, nil
	}
	return nil, fmt.Errorf("directory: lookup: kind %q: must be \"user\" or \"device\"", kind)
}

func (d *Directory) lookup(ctx context.Context, kind string, fields map[string]string, useCache bool) (string, []string, error) {
	t, err := d.template(kind)
	if err != nil {
		d.stats.errors.Add(1)
		return "", nil, err
	}
	var buf [128]byte
	kb := appendKey(buf[:0], kind, t, fields)
	if d.cache != nil && useCache {
		if e := d.cache.get(kb); e != nil && d.cache.clock().Before(e.expires) {
			d.stats.hits.Add(1)
			if e.err != nil {
				d.stats.errors.Add(1)
			}
			return e.dn, slices.Clone(e.groups), e.err
		}
	}
	d.stats.misses.Add(1)
	key := string(kb)
	var fl *flight
	if useCache {
		var leader bool
		fl, leader = d.flights.join(key)
		if leader {
			d.start(key, fl, kind, t.substitute(fields), true)
		}
	} else {
		fl = &flight{done: make(chan struct{})}
		d.start(key, fl, kind, t.substitute(fields), false)
	}
	select {
	case <-fl.done:
	case <-ctx.Done():
		d.stats.errors.Add(1)
		return "", nil, &UnavailableError{Err: fmt.Errorf("lookup: %w", ctx.Err())}
	}
	if fl.err != nil {
		d.stats.errors.Add(1)
	}
	return fl.dn, slices.Clone(fl.groups), fl.err
}

// start runs the lookup of fl in the background, bounded by the timeout,
// so that no caller's cancellation cancels it for the others.
func (d *Directory) start(key string, fl *flight, kind, filter string, shared bool) {
	d.bgMu.RLock()
	defer d.bgMu.RUnlock()
	if d.closed {
		fl.err = unavailable("closed")
		if shared {
			d.flights.finish(key, fl)
		} else {
			close(fl.done)
		}
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), d.s.timeout)
		start := time.Now()
		dn, groups, err := d.be.lookup(ctx, kind, filter)
		cancel()
		if d.queryObs != nil {
			d.queryObs.Observe(time.Since(start))
		}
		now := d.s.now()
		if d.cache != nil {
			d.settle(key, now, shared, &dn, &groups, &err)
		}
		fl.dn, fl.groups, fl.err = dn, groups, err
		if shared {
			d.flights.finish(key, fl)
		} else {
			close(fl.done)
		}
	}()
}

// settle caches a definite answer, or replaces an outage error with a
// stale answer when serve_stale (and allowStale: not for LookupNoCache)
// allows it.
func (d *Directory) settle(key string, now time.Time, allowStale bool, dn *string, groups *[]string, err *error) {
	switch {
	case *err == nil || errors.Is(*err, ErrAmbiguous):
		ttl := d.s.cacheTTL
		if *dn == "" {
			ttl = d.s.negativeTTL
		}
		if ttl > 0 {
			d.cache.put(key, &cacheEntry{dn: *dn, groups: *groups, err: *err, fetched: now, expires: now.Add(ttl)})
		}
	case allowStale && IsUnavailable(*err):
		e := d.cache.get([]byte(key))
		if e == nil {
			return
		}
		age := now.Sub(e.fetched)
		if !d.staleServable(age) {
			return
		}
		d.stats.stale.Add(1)
		d.logger.Warn("directory unavailable: serving stale answer", "age", age.Round(time.Second).String(), "dn", e.dn, "error", (*err).Error())
		*dn, *groups, *err = e.dn, e.groups, e.err
	}
}

// staleServable is the outage policy, the one decision both lookups and
// Ready follow: while the directory cannot answer, may an answer the server
// gave age ago still be served? Only with on_outage = "serve_stale" (and a
// cache to serve from), and only up to stale_max_age. A lookup asks it for
// its cached entry; Ready for the freshest answer the cache can hold.
func (d *Directory) staleServable(age time.Duration) bool {
	return d.cache != nil && d.s.serveStale && age <= d.s.staleMaxAge
}

// Check tests the backend: for LDAP it connects to every URL, binds and
// reads the base DN; for a file it re-reads and parses the file. It is for
// `gatehouse check --directory`.
func (d *Directory) Check(ctx context.Context) error {
	return d.be.check(ctx)
}

// Reload re-reads the LDIF file (file backend) and invalidates the cache,
// so the next lookup of every identity asks the backend: a group change
// made before the reload is seen by the re-validation that follows it. A
// file that does not parse is reported and its previous contents stay; the
// cache is invalidated all the same.
func (d *Directory) Reload() error {
	err := d.be.reload()
	d.Invalidate()
	return err
}

// Invalidate marks every cached answer expired: lookups go to the backend,
// while on_outage = "serve_stale" may still fall back on them (up to
// stale_max_age) if the directory is down.
func (d *Directory) Invalidate() {
	if d.cache != nil {
		d.cache.expireAll()
	}
}

// FlushCache empties the answer cache.
func (d *Directory) FlushCache() {
	if d.cache != nil {
		d.cache.flush()
	}
}

// Stats returns a snapshot of the counters.
func (d *Directory) Stats() Stats {
	s := Stats{
		Hits:    d.stats.hits.Load(),
		Misses:  d.stats.misses.Load(),
		Stale:   d.stats.stale.Load(),
		Queries: d.stats.queries.Load(),
		Errors:  d.stats.errors.Load(),
	}
	if d.cache != nil {
		s.Entries = d.cache.len()
	}
	return s
}
