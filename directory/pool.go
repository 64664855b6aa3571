package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Reconnection backoff after every URL failed.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// pool is a small set of long-lived, service-account-bound LDAP connections
// used concurrently (go-ldap multiplexes requests on one connection). A
// broken or slow connection is closed and redialled on demand, trying the
// URLs in order; the health probe returns the pool to the primary.
type pool struct {
	s      *settings
	logger *slog.Logger
	urls   []*url.URL
	tls    *tls.Config // without ServerName
	slots  []*slot
	next   atomic.Uint32
	closed atomic.Bool
	wg     sync.WaitGroup // background closes and operations
	bgMu   sync.RWMutex   // orders wg.Add (read side) before close's Wait

	lastOK    atomic.Int64 // s.now() in Unix ns of the server's last answer (dial, probe or operation); 0 = never
	refilling atomic.Bool  // a background redial started by refill is running
	bgCtx     context.Context
	bgCancel  context.CancelFunc // cancelled by close: ends background redials

	mu sync.Mutex
	// guarded by mu
	failures int       // consecutive failed dials
	retryAt  time.Time // no dial before this (backoff)
	lastErr  error
	down     bool // outage logged
}

// slot holds one connection; lock (a 1-buffered channel, so waiting honours
// contexts) serialises dialling it.
type slot struct {
	lock chan struct{}
	c    atomic.Pointer[pconn]
}

type pconn struct {
	conn   *ldap.Conn
	url    int // index in urls
	broken atomic.Bool
}

func (c *pconn) usable() bool { return c != nil && !c.broken.Load() && !c.conn.IsClosing() }

func newPool(s *settings, logger *slog.Logger) (*pool, error) {
	p := &pool{s: s, logger: logger}
	p.bgCtx, p.bgCancel = context.WithCancel(context.Background())
	for _, raw := range s.cfg.LDAP.URLs {
		u, _ := url.Parse(raw) // validated
		p.urls = append(p.urls, u)
	}
	p.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	if f := s.cfg.LDAP.CAFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, configErr("ldap.ca_file", "%v", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, configErr("ldap.ca_file", "%s: no PEM certificates", f)
		}
		p.tls.RootCAs = roots
	}
	for range s.poolSize {
		p.slots = append(p.slots, &slot{lock: make(chan struct{}, 1)})
	}
	return p, nil
}

// get returns a usable connection: its round-robin slot's, else it fills
// that slot by dialling — unless backing off or another caller is already
// dialling it, when any other usable connection serves.
func (p *pool) get(ctx context.Context) (*pconn, error) {
	if p.closed.Load() {
		return nil, unavailable("closed")
	}
	i := int(p.next.Add(1)) % len(p.slots)
	sl := p.slots[i]
	if c := sl.c.Load(); c.usable() {
		return c, nil
	}
	p.mu.Lock()
	wait, lastErr := time.Until(p.retryAt), p.lastErr
	p.mu.Unlock()
	if wait > 0 {
		if c := p.anyUsable(i); c != nil {
			return c, nil
		}
		return nil, &UnavailableError{Err: lastErr}
	}
	select {
	case sl.lock <- struct{}{}:
	default:
		if c := p.anyUsable(i); c != nil {
			return c, nil
		}
		select {
		case sl.lock <- struct{}{}:
		case <-ctx.Done():
			return nil, unavailable("%w", ctx.Err())
		}
	}
	defer func() { <-sl.lock }()
	if c := sl.c.Load(); c.usable() {
		return c, nil
	}
	c, err := p.dialAny(ctx)
	p.record(err)
	if err != nil {
		if c := p.anyUsable(i); c != nil {
			return c, nil
		}
		return nil, &UnavailableError{Err: err}
	}
	if old := sl.c.Swap(c); old != nil {
		p.discard(old)
	}
	if p.closed.Load() { // lost a race with close
		p.discard(c)
		return nil, unavailable("closed")
	}
	return c, nil
}

// anyUsable returns a usable connection from another slot than skip (-1:
// any slot).
func (p *pool) anyUsable(skip int) *pconn {
	n := len(p.slots)
	for j := 1; j <= n; j++ { // from the slot after skip, round the ring
		i := (skip + j) % n
		if i == skip {
			continue
		}
		if c := p.slots[i].c.Load(); c.usable() {
			return c
		}
	}
	return nil
}

// answered records that the server just answered (a dial bound, a probe
// or an operation got a reply): the outage policy measures from here.
func (p *pool) answered() { p.lastOK.Store(p.s.now().UnixNano()) }

// lastAnswer is when the server last answered; zero if never.
func (p *pool) lastAnswer() time.Time {
	if n := p.lastOK.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// lastError is the last dial failure, if the pool is down.
func (p *pool) lastError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// refill starts one background fill of a slot (unless one is running, or
// the pool is backing off), so that after its connections broke the pool
// reconnects without waiting for a lookup or the next probe.
func (p *pool) refill() {
	if !p.refilling.CompareAndSwap(false, true) {
		return
	}
	if !p.goBG(func() {
		defer p.refilling.Store(false)
		ctx, cancel := context.WithTimeout(p.bgCtx, p.s.timeout)
		defer cancel()
		p.get(ctx)
	}) {
		p.refilling.Store(false)
	}
}

// record updates the backoff state after a dial and logs transitions.
func (p *pool) record(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		p.answered()
		if p.down {
			p.logger.Info("directory reachable again")
		}
		p.failures, p.retryAt, p.lastErr, p.down = 0, time.Time{}, nil, false
		return
	}
	p.failures++
	b := minBackoff << min(p.failures-1, 10)
	p.retryAt = time.Now().Add(min(b, maxBackoff))
	p.lastErr = err
	if !p.down {
		p.down = true
		p.logger.Warn("directory unavailable", "error", err.Error())
	}
}

// dialAny dials the URLs in order and returns the first that connects and
// binds. Each URL gets an equal share of the time left, so a black-holed
// primary cannot use up the whole timeout.
func (p *pool) dialAny(ctx context.Context) (*pconn, error) {
	var errs []error
	for i := range p.urls {
		uctx, cancel := ctx, context.CancelFunc(func() {})
		if d, ok := ctx.Deadline(); ok && i < len(p.urls)-1 {
			uctx, cancel = context.WithTimeout(ctx, time.Until(d)/time.Duration(len(p.urls)-i))
		}
		c, err := p.dial(uctx, i)
		cancel()
		if err == nil {
			return &pconn{conn: c, url: i}, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, joinErrors(errs)
}

// dial connects to urls[i], upgrades with StartTLS if configured, and binds
// as the service account. The whole setup is bounded by ctx: the socket
// carries ctx's deadline until the connection is ready.
func (p *pool) dial(ctx context.Context, i int) (*ldap.Conn, error) {
	u := p.urls[i]
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, "389"
		if u.Scheme == "ldaps" {
			port = "636"
		}
	}
	ka := p.s.keepAlive
	if ka < 0 {
		ka = -1
	}
	d := &net.Dialer{KeepAlive: ka, Timeout: p.s.timeout}
	raw, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u.Redacted(), err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(p.s.timeout)
	}
	raw.SetDeadline(deadline)
	// Closing raw aborts any step below that blocks when ctx ends.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	tc := p.tls.Clone()
	tc.ServerName = p.s.cfg.LDAP.ServerName
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	var nc net.Conn = raw
	if u.Scheme == "ldaps" {
		t := tls.Client(raw, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("%s: %w", u.Redacted(), err)
		}
		nc = t
	}
	c := ldap.NewConn(nc, u.Scheme == "ldaps")
	c.Start()
	c.SetTimeout(p.s.timeout)
	fail := func(step string, err error) (*ldap.Conn, error) {
		c.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("%s: %s: %w", u.Redacted(), step, readable(err))
	}
	if p.s.cfg.LDAP.StartTLS {
		if err := c.StartTLS(tc); err != nil {
			return fail("starttls", err)
		}
	}
	if dn := p.s.cfg.LDAP.BindDN; dn != "" {
		pw, err := readPassword(p.s.cfg.LDAP.BindPasswordFile)
		if err != nil {
			return fail("bind", err)
		}
		if err := c.Bind(dn, pw); err != nil {
			return fail("bind as "+dn, err)
		}
	}
	if !stop() {
		c.Close()
		return nil, fmt.Errorf("%s: %w", u.Redacted(), ctx.Err())
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

// goBG runs f in a goroutine that close waits for; after close it reports
// false and runs nothing.
func (p *pool) goBG(f func()) bool {
	p.bgMu.RLock()
	defer p.bgMu.RUnlock()
	if p.closed.Load() {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

// discard marks c broken and closes it in the background.
func (p *pool) discard(c *pconn) {
	if c.broken.Swap(true) {
		return
	}
	if !p.goBG(func() { c.conn.Close() }) {
		c.conn.Close()
	}
}

// do runs op on a pooled connection, bounded by ctx, and returns its
// result. A connection that fails at the network level, or is still busy
// when ctx ends, is discarded (an abandoned op's result is dropped); a
// network failure is retried once on another connection.
func (p *pool) do(ctx context.Context, op func(*ldap.Conn) (any, error)) (any, error) {
	type result struct {
		v   any
		err error
	}
	var lastErr error
	for range 2 {
		c, err := p.get(ctx)
		if err != nil {
			return nil, err
		}
		resc := make(chan result, 1)
		if !p.goBG(func() {
			v, err := op(c.conn)
			resc <- result{v, err}
		}) {
			return nil, unavailable("closed")
		}
		var r result
		select {
		case r = <-resc:
			r.err = readable(r.err)
		case <-ctx.Done():
			p.discard(c)
			return nil, unavailable("%s: %w", p.urls[c.url].Redacted(), ctx.Err())
		}
		if r.err == nil {
			p.answered()
			return r.v, nil
		}
		if !c.conn.IsClosing() && !connFailure(r.err) {
			p.answered() // an answer, if not the one hoped for
			return r.v, r.err
		}
		p.discard(c)
		lastErr = fmt.Errorf("%s: %w", p.urls[c.url].Redacted(), r.err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, &UnavailableError{Err: lastErr}
}

// connFailure reports whether err means the connection (or server) is not
// usable, as opposed to an answer from the server: anything that is not an
// LDAP result, and the results that say the server cannot serve.
func connFailure(err error) bool {
	var le *ldap.Error
	if !errors.As(err, &le) {
		return true
	}
	return ldap.IsErrorAnyOf(err, ldap.ErrorNetwork, ldap.LDAPResultBusy, ldap.LDAPResultUnavailable,
		ldap.LDAPResultServerDown, ldap.LDAPResultTimeout, ldap.LDAPResultConnectError, ldap.LDAPResultTimeLimitExceeded)
}

// probe checks every connection with a root DSE read, drops failed ones,
// fills empty slots, and moves failed-over slots back to the primary.
func (p *pool) probe(ctx context.Context) {
	for _, sl := range p.slots {
		if ctx.Err() != nil || p.closed.Load() {
			return
		}
		select {
		case sl.lock <- struct{}{}:
		case <-ctx.Done():
			return
		}
		p.probeSlot(ctx, sl)
		<-sl.lock
	}
}

func (p *pool) probeSlot(ctx context.Context, sl *slot) {
	pctx, cancel := context.WithTimeout(ctx, p.s.timeout)
	defer cancel()
	c := sl.c.Load()
	if c.usable() {
		if err := p.ping(pctx, c); err != nil {
			p.logger.Warn("directory connection failed its health probe", "url", p.urls[c.url].Redacted(), "error", err.Error())
			sl.c.CompareAndSwap(c, nil)
			p.discard(c)
			c = nil
		}
	}
	if c.usable() && c.url == 0 {
		return
	}
	// Empty slot, or failed over: try from the primary.
	nc, err := p.dialAny(pctx)
	p.record(err)
	if err != nil {
		return
	}
	if c.usable() && nc.url >= c.url {
		p.discard(nc) // no better than what we have
		return
	}
	if old := sl.c.Swap(nc); old != nil {
		// Let requests in flight on the old connection finish.
		if !p.goBG(func() {
			t := time.NewTimer(p.s.timeout)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			p.discard(old)
		}) {
			p.discard(old)
		}
	}
	if p.closed.Load() {
		p.discard(nc)
	}
}

func (p *pool) ping(ctx context.Context, c *pconn) error {
	errc := make(chan error, 1)
	if !p.goBG(func() {
		_, err := c.conn.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
		errc <- err
	}) {
		return errors.New("closed")
	}
	select {
	case err := <-errc:
		err = readable(err)
		if err == nil {
			p.answered()
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run probes the pool every ProbeEvery (after a first fill) until ctx ends.
func (p *pool) run(ctx context.Context) error {
	p.probe(ctx)
	t := time.NewTicker(p.s.probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			p.probe(ctx)
		}
	}
}

// close closes every connection and waits for background work.
func (p *pool) close() {
	p.bgMu.Lock()
	p.closed.Store(true)
	p.bgMu.Unlock()
	p.bgCancel()
	for _, sl := range p.slots {
		if c := sl.c.Swap(nil); c != nil {
			p.discard(c)
		}
	}
	p.wg.Wait()
}
