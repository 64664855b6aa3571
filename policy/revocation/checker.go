// Package revocation fetches what policy's trust step needs from the
// network: CRLs published at http(s) URLs, refreshed in the background and
// kept on disk, and OCSP answers from the responder configured for each CA.
//
// Every URL comes from the configuration ([[trust.ca_source]]), never from a
// client's certificate. Every CRL and OCSP response is verified against the
// configured CA before it is used; a bad fetch keeps the last good CRL.
//
// A *Checker implements policy.RevocationChecker:
//
//	chk, err := revocation.New(revocation.Config{StateDir: "/var/lib/gatehouse/revocation"}, p, logger)
//	auth.SetRevocation(chk)
//	go chk.Run(ctx)     // refreshes CRLs until ctx is done
//	chk.Update(newPolicy) // after a reload
package revocation

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// Config tunes a Checker. The zero value works: no disk copies, default
// limits. What to fetch and when comes from the policy (trust.ca_source,
// crl_refresh, ocsp_*).
type Config struct {
	// StateDir keeps the last good copy of every fetched CRL, so that a
	// restart without network still has it. Created when first written.
	// Empty: CRLs are kept in memory only.
	StateDir string
	// Client makes the CRL and OCSP requests. nil: a client of its own
	// (proxy from the environment, as net/http does).
	Client *http.Client
	// FetchTimeout bounds one CRL download. Default 30s.
	FetchTimeout time.Duration
	// MaxCRLSize bounds a downloaded CRL, in bytes. Default 64 MiB.
	MaxCRLSize int64
	// OCSPCacheSize bounds the number of cached OCSP answers. Default 10000.
	OCSPCacheSize int
	// OCSPFailureHold is how long a failed OCSP exchange (no answer, bad
	// answer) is remembered, so that a responder that is down costs one
	// timeout per certificate per hold rather than one per authentication.
	// Default 10s; negative: failures are not remembered.
	OCSPFailureHold time.Duration
}

// Defaults.
const (
	DefaultFetchTimeout    = 30 * time.Second
	DefaultMaxCRLSize      = 64 << 20
	DefaultOCSPCacheSize   = 10000
	DefaultOCSPFailureHold = 10 * time.Second
)

// Checker fetches CRLs and asks OCSP responders. It is safe for concurrent
// use; the zero value is not usable: call New.
type Checker struct {
	cfg       Config
	log       *slog.Logger
	client    *http.Client
	ownClient bool
	wake      chan struct{} // cap 1: the schedule changed

	mu       sync.RWMutex // guards the fields below
	settings policy.RevocationSettings
	crls     map[crlKey]*crlState

	ocsp ocspCache
}

// crlKey names one CRL source: a CA (SHA-256 of its certificate) and a URL.
type crlKey struct {
	ca  [32]byte
	url string
}

// crlState is one CRL source. Fields other than fetchMu are guarded by
// Checker.mu.
type crlState struct {
	fetchMu  sync.Mutex // one fetch at a time per source
	src      policy.RevocationSource
	crl      *policy.CRL // last good; nil if none
	due      time.Time   // next scheduled fetch
	failures int         // consecutive failed fetches
	running  bool        // a scheduled fetch is running
}

// New returns a Checker for policy p. It loads the disk copies of p's CRLs
// (if cfg.StateDir is set) but fetches nothing: Run does, or Refresh.
func New(cfg Config, p *policy.Policy, logger *slog.Logger) (*Checker, error) {
	if p == nil {
		return nil, errors.New("revocation: no policy")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FetchTimeout < 0 || cfg.MaxCRLSize < 0 || cfg.OCSPCacheSize < 0 {
		return nil, errors.New("revocation: negative limit in Config")
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.MaxCRLSize == 0 {
		cfg.MaxCRLSize = DefaultMaxCRLSize
	}
	if cfg.OCSPCacheSize == 0 {
		cfg.OCSPCacheSize = DefaultOCSPCacheSize
	}
	if cfg.OCSPFailureHold == 0 {
		cfg.OCSPFailureHold = DefaultOCSPFailureHold
	}
	c := &Checker{cfg: cfg, log: logger, client: cfg.Client, wake: make(chan struct{}, 1), crls: map[crlKey]*crlState{}}
	if c.client == nil {
		c.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		c.ownClient = true
	}
	c.ocsp.init(cfg.OCSPCacheSize, cfg.OCSPFailureHold)
	c.Update(p)
	return c, nil
}

// Update switches to the sources of policy p (after a reload): CRLs of
// sources that stay are kept, new ones are loaded from disk and fetched as
// soon as Run gets to them. Call it before or right after swapping p into
// the Authorizer.
func (c *Checker) Update(p *policy.Policy) {
	s := p.Revocation()
	c.mu.RLock()
	old := c.crls
	c.mu.RUnlock()
	next := make(map[crlKey]*crlState, len(s.Sources))
	now := time.Now()
	for _, src := range s.Sources {
		if src.CRLURL == "" {
			continue
		}
		k := crlKey{sha256.Sum256(src.CA.Raw), src.CRLURL}
		if st := old[k]; st != nil {
			next[k] = st
			continue
		}
		st := &crlState{src: src, due: now}
		if l, err := c.loadDisk(src); err == nil {
			st.crl = l
			c.log.Info("revocation: CRL loaded from disk", "url", src.CRLURL, "this_update", l.ThisUpdate, "next_update", l.NextUpdate, "entries", l.Len())
		} else if !errors.Is(err, errNoStateDir) && !errors.Is(err, errNotOnDisk) {
			c.log.Warn("revocation: disk copy of CRL unusable", "url", src.CRLURL, "err", err)
		}
		next[k] = st
	}
	c.mu.Lock()
	c.settings, c.crls = s, next
	c.mu.Unlock()
	c.poke()
}

func (c *Checker) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// CRL implements policy.RevocationChecker: the last good CRL fetched from
// url for certificates issued by issuer, or nil.
func (c *Checker) CRL(issuer *x509.Certificate, url string) *policy.CRL {
	k := crlKey{sha256.Sum256(issuer.Raw), url}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if st := c.crls[k]; st != nil {
		return st.crl
	}
	return nil
}

// Run fetches every CRL now and then on schedule — every crl_refresh, before
// its nextUpdate, sooner after a failure — until ctx is done. It returns nil
// after all its goroutines have exited.
func (c *Checker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		if c.ownClient {
			c.client.CloseIdleConnections()
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := c.startDue(ctx, &wg, time.Now())
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-c.wake:
		}
	}
}

// startDue starts a fetch for every source that is due and returns when the
// next one falls due.
func (c *Checker) startDue(ctx context.Context, wg *sync.WaitGroup, now time.Time) time.Time {
	next := now.Add(time.Hour)
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, st := range c.crls {
		if st.running {
			continue
		}
		if st.due.After(now) {
			if st.due.Before(next) {
				next = st.due
			}
			continue
		}
		st.running = true
		wg.Go(func() {
			_ = c.refresh(ctx, k, st)
			c.mu.Lock()
			st.running = false
			c.mu.Unlock()
			c.poke()
		})
	}
	return next
}

// Refresh fetches every CRL now, in parallel, and returns the errors of the
// fetches that failed (each of which kept the last good CRL).
func (c *Checker) Refresh(ctx context.Context) error {
	c.mu.RLock()
	states := make(map[crlKey]*crlState, len(c.crls))
	for k, st := range c.crls {
		states[k] = st
	}
	c.mu.RUnlock()
	var (
		wg   sync.WaitGroup
		emu  sync.Mutex
		errs []error
	)
	for k, st := range states {
		wg.Go(func() {
			if err := c.refresh(ctx, k, st); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// refresh fetches one CRL and, if it verifies and is not older than the one
// in use, installs it and writes it to disk.
func (c *Checker) refresh(ctx context.Context, k crlKey, st *crlState) error {
	st.fetchMu.Lock()
	defer st.fetchMu.Unlock()
	c.mu.RLock()
	cur, refresh := st.crl, c.settings.CRLRefresh
	c.mu.RUnlock()
	now := time.Now()
	l, err := c.fetchCRL(ctx, st.src, now)
	if err == nil && cur != nil && !l.Newer(cur) && !sameCRL(l, cur) {
		err = fmt.Errorf("revocation: CRL %s: older than the one in use (thisUpdate %s < %s)", k.url,
			l.ThisUpdate.UTC().Format(time.RFC3339), cur.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if err != nil {
		c.mu.Lock()
		st.failures++
		st.due = now.Add(retryAfter(st.failures, refresh))
		c.mu.Unlock()
		if ctx.Err() == nil {
			attrs := []any{"url", k.url, "err", err, "failures", st.failures}
			if cur != nil {
				attrs = append(attrs, "keeping_this_update", cur.ThisUpdate, "keeping_next_update", cur.NextUpdate)
			}
			c.log.Warn("revocation: CRL fetch failed, keeping the last good CRL", attrs...)
		}
		return err
	}
	if err := c.saveDisk(st.src, l, cur); err != nil {
		c.log.Warn("revocation: cannot keep CRL on disk", "url", k.url, "err", err)
	}
	c.mu.Lock()
	st.crl, st.failures = l, 0
	st.due = nextFetch(now, refresh, l)
	c.mu.Unlock()
	if cur == nil || !sameCRL(l, cur) {
		c.log.Info("revocation: CRL updated", "url", k.url, "this_update", l.ThisUpdate, "next_update", l.NextUpdate, "entries", l.Len())
	}
	return nil
}

// Stats describes a Checker's state, for status pages and metrics.
type Stats struct {
	CRLs          []CRLStatus
	OCSPCacheHits uint64 // OCSP questions answered from the cache
	OCSPExchanges uint64 // OCSP questions sent to a responder
}

// CRLStatus is the state of one CRL URL.
type CRLStatus struct {
	URL        string
	CA         string    // subject of the CA
	Source     string    // of the CRL in use, "" if none
	ThisUpdate time.Time // of the CRL in use
	NextUpdate time.Time
	Entries    int
	Failures   int       // consecutive failed fetches
	NextFetch  time.Time // when Run fetches it next
}

// Stats returns the checker's state.
func (c *Checker) Stats() Stats {
	var s Stats
	s.OCSPCacheHits, s.OCSPExchanges = c.ocsp.stats()
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, st := range c.crls {
		cs := CRLStatus{URL: st.src.CRLURL, CA: st.src.CA.Subject.String(), Failures: st.failures, NextFetch: st.due}
		if l := st.crl; l != nil {
			cs.Source, cs.ThisUpdate, cs.NextUpdate, cs.Entries = l.Source, l.ThisUpdate, l.NextUpdate, l.Len()
		}
		s.CRLs = append(s.CRLs, cs)
	}
	slices.SortFunc(s.CRLs, func(a, b CRLStatus) int { return strings.Compare(a.CA+a.URL, b.CA+b.URL) })
	return s
}

func sameCRL(a, b *policy.CRL) bool { return string(a.Raw) == string(b.Raw) }

// nextFetch schedules the fetch after a good one: every refresh, and before
// the CRL's nextUpdate by a tenth of its validity (at most refresh).
func nextFetch(now time.Time, refresh time.Duration, l *policy.CRL) time.Time {
	due := now.Add(refresh)
	if !l.NextUpdate.IsZero() {
		margin := min(refresh, l.NextUpdate.Sub(l.ThisUpdate)/10)
		due = minTime(due, l.NextUpdate.Add(-margin))
	}
	// Never hammer a server that keeps serving a CRL about to expire.
	return maxTime(due, now.Add(min(refresh, 30*time.Second)))
}

// retryAfter is the backoff after n consecutive failures: 5s doubling, at
// most min(refresh, 5m).
func retryAfter(n int, refresh time.Duration) time.Duration {
	d := 5 * time.Second << min(n-1, 10)
	return min(d, refresh, 5*time.Minute)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
