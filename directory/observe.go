package directory

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// DurationObserver receives the duration of every query sent to the
// backend (cache misses). A latency histogram satisfies it; Observe must be
// cheap and must not block.
type DurationObserver interface {
	Observe(time.Duration)
}

// SetQueryObserver makes the Directory report backend query durations to o
// (nil = none). Call it before the first lookup.
func (d *Directory) SetQueryObserver(o DurationObserver) { d.queryObs = o }

// Ready reports whether the directory can answer: for LDAP, a pooled
// connection is up, or the outage is still within stale_max_age and
// on_outage = "serve_stale" lets cached answers be served; for a file, the
// file is still there. It does no network I/O (the pool's health probe
// keeps the state current), so it suits a readiness endpoint.
func (d *Directory) Ready() error {
	if r, ok := d.be.(interface{ ready() error }); ok {
		return r.ready()
	}
	return nil
}

func (b *fileBackend) ready() error {
	if _, err := os.Stat(b.s.cfg.File); err != nil {
		return fmt.Errorf("directory: file: %w", err)
	}
	return nil
}

func (b *ldapBackend) ready() error {
	p := b.pool
	if p.closed.Load() {
		return errors.New("directory: closed")
	}
	for _, sl := range p.slots {
		if sl.c.Load().usable() {
			return nil
		}
	}
	p.mu.Lock()
	down, since, lastErr := p.down, p.downSince, p.lastErr
	p.mu.Unlock()
	switch {
	case !down:
		return errors.New("directory: not connected yet")
	case p.s.serveStale && time.Since(since) <= p.s.staleMaxAge:
		return nil
	}
	return fmt.Errorf("directory: unavailable since %s: %v", since.UTC().Format(time.RFC3339), lastErr)
}
