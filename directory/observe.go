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
// connection is up, or — while none is — the outage policy (the same
// decision lookups make, staleServable) still lets the freshest answer the
// server gave be served: on_outage = "serve_stale" within stale_max_age of
// the server's last answer; never with on_outage = "deny". For a file, the
// file is still there. It does no network I/O itself (with no usable
// connection it starts one background redial), so it suits a readiness
// endpoint.
func (d *Directory) Ready() error {
	switch b := d.be.(type) {
	case *fileBackend:
		return b.ready()
	case *ldapBackend:
		p := b.pool
		if p.closed.Load() {
			return errors.New("directory: closed")
		}
		if p.anyUsable(-1) != nil {
			return nil
		}
		p.refill()
		last := p.lastAnswer()
		if last.IsZero() {
			if err := p.lastError(); err != nil {
				return fmt.Errorf("directory: not connected: %w", err)
			}
			return errors.New("directory: not connected yet")
		}
		age := d.s.now().Sub(last)
		if d.staleServable(age) {
			return nil
		}
		msg := fmt.Sprintf("directory: unavailable: no answer from the server since %s", last.UTC().Format(time.RFC3339))
		if err := p.lastError(); err != nil {
			return fmt.Errorf("%s: %w", msg, err)
		}
		return errors.New(msg)
	}
	return nil
}

func (b *fileBackend) ready() error {
	if _, err := os.Stat(b.s.cfg.File); err != nil {
		return fmt.Errorf("directory: file: %w", err)
	}
	return nil
}
