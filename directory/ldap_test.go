package directory

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var aliceFields = map[string]string{"email": "alice@example.com"}

func startRun(t *testing.T, d *Directory) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// eventually retries f until it succeeds or the deadline passes.
func eventually(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered after %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lookupAlice(d *Directory) error {
	dn, _, err := d.LookupNoCache(context.Background(), "user", aliceFields)
	if err == nil && !sameDN(dn, dnAlice) {
		err = fmt.Errorf("dn = %q", dn)
	}
	return err
}

// wantOutage checks err is an outage and the call took at most timeout
// (plus scheduling slack).
func wantOutage(t *testing.T, err error, took, timeout time.Duration) {
	t.Helper()
	if !IsUnavailable(err) {
		t.Fatalf("err = %v, want an outage", err)
	}
	if !strings.HasPrefix(err.Error(), "directory unavailable") {
		t.Errorf("err = %q", err)
	}
	if took > timeout+500*time.Millisecond {
		t.Fatalf("outage answered after %v, timeout %v", took, timeout)
	}
}

func TestOutageStopRestart(t *testing.T) {
	s := startSlapd(t)
	const timeout = time.Second
	d := newDir(t, "ldap", s, func(c *Config) { c.Timeout = Duration{timeout} })
	startRun(t, d)
	must(t, lookupAlice(d))

	s.kill()
	for range 3 {
		start := time.Now()
		err := lookupAlice(d)
		wantOutage(t, err, time.Since(start), timeout)
	}
	// Deny is the default: a cached answer is not served once expired, and
	// a new key is an outage.
	_, _, err := d.Lookup(context.Background(), "user", map[string]string{"email": "bob@example.com"})
	if !IsUnavailable(err) {
		t.Fatalf("bob during outage: %v", err)
	}

	s.start()
	eventually(t, 10*time.Second, func() error { return lookupAlice(d) })
}

func TestOutageSIGSTOP(t *testing.T) {
	s := startSlapd(t)
	const timeout = 700 * time.Millisecond
	before := runtime.NumGoroutine()
	cfg := s.config("")
	cfg.Timeout = Duration{timeout}
	d, err := New(cfg, testLogger(t))
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	must(t, lookupAlice(d))

	s.pause()
	for range 3 {
		start := time.Now()
		err := lookupAlice(d)
		wantOutage(t, err, time.Since(start), timeout)
	}
	// Concurrent callers are bounded too.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			start := time.Now()
			_, _, err := d.Lookup(context.Background(), "user", map[string]string{"email": "carol@example.com"})
			if !IsUnavailable(err) || time.Since(start) > timeout+500*time.Millisecond {
				t.Errorf("paused server: err %v after %v", err, time.Since(start))
			}
		})
	}
	wg.Wait()

	s.resume()
	eventually(t, 10*time.Second, func() error { return lookupAlice(d) })
	cancel()
	must(t, <-done)
	checkGoroutines(t, before)
}

func TestServeStale(t *testing.T) {
	s := startSlapd(t)
	d := newDir(t, "ldap", s, func(c *Config) {
		c.OnOutage = "serve_stale"
		c.CacheTTL = Duration{50 * time.Millisecond}
		c.NegativeCacheTTL = Duration{50 * time.Millisecond}
		c.StaleMaxAge = Duration{time.Hour}
		c.Timeout = Duration{time.Second}
	})
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	useClock(d, clock)
	ctx := context.Background()
	dn, groups, err := d.Lookup(ctx, "user", aliceFields)
	must(t, err)
	_, _, err = d.Lookup(ctx, "user", map[string]string{"email": "nobody@example.com"})
	must(t, err)
	clock.advance(100 * time.Millisecond) // both answers expire
	s.kill()

	dn2, groups2, err := d.Lookup(ctx, "user", aliceFields)
	if err != nil || dn2 != dn || len(groups2) != len(groups) {
		t.Fatalf("stale alice: %q %q %v", dn2, groups2, err)
	}
	if dn, _, err := d.Lookup(ctx, "user", map[string]string{"email": "nobody@example.com"}); err != nil || dn != "" {
		t.Fatalf("stale negative: %q %v", dn, err)
	}
	if _, _, err := d.Lookup(ctx, "user", map[string]string{"email": "bob@example.com"}); !IsUnavailable(err) {
		t.Fatalf("never cached bob: %v", err)
	}
	if st := d.Stats(); st.Stale != 2 {
		t.Fatalf("stats %+v, want 2 stale", st)
	}
	// explain --no-cache shows the outage, not the stale answer.
	if _, _, err := d.LookupNoCache(ctx, "user", aliceFields); !IsUnavailable(err) {
		t.Fatalf("no-cache during outage: %v", err)
	}
}

func TestServeStaleMaxAge(t *testing.T) {
	s := startSlapd(t)
	d := newDir(t, "ldap", s, func(c *Config) {
		c.OnOutage = "serve_stale"
		c.CacheTTL = Duration{20 * time.Millisecond}
		c.StaleMaxAge = Duration{100 * time.Millisecond}
	})
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	useClock(d, clock)
	_, _, err := d.Lookup(context.Background(), "user", aliceFields)
	must(t, err)
	s.kill()
	clock.advance(50 * time.Millisecond) // expired, within stale_max_age
	if _, _, err := d.Lookup(context.Background(), "user", aliceFields); err != nil {
		t.Fatalf("stale within stale_max_age: %v", err)
	}
	clock.advance(150 * time.Millisecond) // older than stale_max_age
	if _, _, err := d.Lookup(context.Background(), "user", aliceFields); !IsUnavailable(err) {
		t.Fatalf("too old to serve: %v", err)
	}
}

func TestTLS(t *testing.T) {
	s := startSlapd(t)
	cases := []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{"starttls", func(c *Config) {}, true},
		{"ldaps", func(c *Config) { c.LDAP.URLs = []string{s.ldapsURL()}; c.LDAP.StartTLS = false }, true},
		{"ldaps by IP name", func(c *Config) {
			c.LDAP.URLs = []string{s.ldapsURL()}
			c.LDAP.StartTLS = false
			c.LDAP.ServerName = ""
		}, true},
		{"starttls wrong CA", func(c *Config) { c.LDAP.CAFile = s.wrongCA }, false},
		{"ldaps wrong CA", func(c *Config) {
			c.LDAP.URLs = []string{s.ldapsURL()}
			c.LDAP.StartTLS = false
			c.LDAP.CAFile = s.wrongCA
		}, false},
		{"starttls wrong name", func(c *Config) { c.LDAP.ServerName = "ldap.example.net" }, false},
		{"ldaps wrong name", func(c *Config) {
			c.LDAP.URLs = []string{s.ldapsURL()}
			c.LDAP.StartTLS = false
			c.LDAP.ServerName = "ldap.example.net"
		}, false},
		{"system roots", func(c *Config) { c.LDAP.CAFile = "" }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newDir(t, "ldap", s, tc.mutate)
			err := lookupAlice(d)
			cerr := d.Check(context.Background())
			if tc.ok {
				must(t, err)
				must(t, cerr)
				return
			}
			if !IsUnavailable(err) || cerr == nil {
				t.Fatalf("lookup err %v, check err %v: want refusal", err, cerr)
			}
			if !strings.Contains(err.Error(), "certificate") {
				t.Errorf("err %q does not say why", err)
			}
		})
	}
}

func TestBindFailureHidesPassword(t *testing.T) {
	s := startSlapd(t)
	const secret = "hunter2-very-secret"
	pw := t.TempDir() + "/pw"
	must(t, writeFile(pw, secret+"\n"))
	cfg := s.config("")
	cfg.LDAP.BindPasswordFile = pw
	var logs strings.Builder
	d2, err := New(cfg, slogTo(&logs))
	must(t, err)
	defer d2.Close()
	err = lookupAlice(d2)
	cerr := d2.Check(context.Background())
	if !IsUnavailable(err) || cerr == nil {
		t.Fatalf("wrong password accepted: %v / %v", err, cerr)
	}
	for _, s := range []string{err.Error(), cerr.Error(), logs.String()} {
		if strings.Contains(s, secret) {
			t.Fatalf("password leaked: %q", s)
		}
	}
	if !strings.Contains(err.Error(), "Invalid Credentials") {
		t.Errorf("err = %q", err)
	}
}

func TestFailoverAndReturnToPrimary(t *testing.T) {
	a, b := startSlapd(t), startSlapd(t)
	d := newDir(t, "ldap", a, func(c *Config) {
		c.LDAP.URLs = []string{a.ldapURL(), b.ldapURL()}
		c.LDAP.ProbeEvery = Duration{100 * time.Millisecond}
		c.LDAP.CAFile = a.caFile
		c.Timeout = Duration{time.Second}
	})
	// b has its own CA: trust both.
	pool := d.be.(*ldapBackend).pool
	pool.tls.RootCAs.AppendCertsFromPEM(readFile(t, b.caFile))
	startRun(t, d)
	must(t, lookupAlice(d))

	a.kill()
	eventually(t, 10*time.Second, func() error { return lookupAlice(d) })
	if !allOn(pool, 1) {
		t.Fatalf("pool not on the secondary: %v", urlsOf(pool))
	}
	a.start()
	eventually(t, 10*time.Second, func() error {
		if !allOn(pool, 0) {
			return fmt.Errorf("pool on %v", urlsOf(pool))
		}
		return lookupAlice(d)
	})
}

func allOn(p *pool, url int) bool {
	for _, sl := range p.slots {
		c := sl.c.Load()
		if c.usable() && c.url != url {
			return false
		}
	}
	return true
}

func urlsOf(p *pool) []int {
	var out []int
	for _, sl := range p.slots {
		if c := sl.c.Load(); c.usable() {
			out = append(out, c.url)
		} else {
			out = append(out, -1)
		}
	}
	return out
}

func TestFirstURLDead(t *testing.T) {
	s := startSlapd(t)
	d := newDir(t, "ldap", s, func(c *Config) {
		c.LDAP.URLs = []string{"ldap://" + freePort(t), s.ldapURL()}
	})
	must(t, lookupAlice(d))
}

func TestConcurrentLookups(t *testing.T) {
	s := startSlapd(t)
	before := runtime.NumGoroutine()
	// 1000 lookups start at once and queue for 4 connections; the test is
	// about their answers, not their speed (a loaded machine under -race
	// serves fewer than 1000 queries a second), so the timeout is generous.
	d, err := New(func() Config {
		c := s.config("")
		c.UserFilter = suiteUserFilter
		c.LDAP.PoolSize = 4
		c.Timeout = Duration{2 * time.Minute}
		return c
	}(), nil)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	users := []struct{ email, dn string }{
		{"alice@example.com", dnAlice}, {"bob@example.com", dnBob}, {"carol@example.com", dnCarol},
		{"frank@example.com", dnFrank}, {"zoe@example.com", dnZoe},
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := range 1000 {
		wg.Go(func() {
			u := users[i%len(users)]
			lookup := d.Lookup
			if i%2 == 0 {
				lookup = d.LookupNoCache
			}
			dn, _, err := lookup(context.Background(), "user", map[string]string{"email": u.email})
			if err == nil && !sameDN(dn, u.dn) {
				err = fmt.Errorf("%s: dn %q", u.email, dn)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := d.Stats()
	t.Logf("stats: %+v", st)
	cancel()
	must(t, <-done)
	checkGoroutines(t, before)
}

func TestCheck(t *testing.T) {
	s := startSlapd(t)
	d := newDir(t, "ldap", s, nil)
	must(t, d.Check(context.Background()))
	d = newDir(t, "ldap", s, func(c *Config) { c.BaseDN = "dc=nowhere,dc=example" })
	if err := d.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "base_dn") {
		t.Fatalf("missing base: %v", err)
	}
	f := newDir(t, "file", nil, nil)
	must(t, f.Check(context.Background()))
}

// TestQueriesPerLookup pins the number of searches of an uncached lookup:
// BFS asks about a whole level in one query.
func TestQueriesPerLookup(t *testing.T) {
	s := startSlapd(t)
	for _, tc := range []struct {
		mode string
		want uint64
	}{
		// entry, direct, then levels {backend,loop-a} {engineering,loop-b} {staff} {company}
		{"member", 6},
		// entry (with memberOf), then the same four levels
		{"memberof", 5},
		{"uniquemember", 4}, // entry, direct, it-unique, none
		{"memberuid", 2},
	} {
		d := newDir(t, "ldap", s, func(c *Config) { c.GroupMode = tc.mode })
		must(t, lookupAlice(d))
		if got := d.Stats().Queries; got != tc.want {
			t.Errorf("%s: %d queries, want %d", tc.mode, got, tc.want)
		}
	}
}

// TestFailoverFromHungPrimary: a primary that accepts TCP but never answers
// does not eat the whole timeout; the secondary answers in time.
func TestFailoverFromHungPrimary(t *testing.T) {
	s := startSlapd(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	const timeout = 2 * time.Second
	d := newDir(t, "ldap", s, func(c *Config) {
		c.LDAP.URLs = []string{"ldap://" + l.Addr().String(), s.ldapURL()}
		c.Timeout = Duration{timeout}
	})
	start := time.Now()
	must(t, lookupAlice(d))
	if took := time.Since(start); took > timeout {
		t.Fatalf("took %v", took)
	}
	must(t, lookupAlice(d))
}
