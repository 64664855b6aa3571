package directory

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type countObs struct{ n atomic.Int64 }

func (c *countObs) Observe(d time.Duration) {
	if d >= 0 {
		c.n.Add(1)
	}
}

func TestFileReadyAndQueryObserver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dir.ldif")
	must(t, os.WriteFile(path, []byte(miniLDIF), 0o600))
	d, err := New(Config{Backend: "file", File: path}, testLogger(t))
	must(t, err)
	var obs countObs
	d.SetQueryObserver(&obs)
	startRun(t, d)
	if err := d.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	for range 3 {
		if _, _, err := d.Lookup(context.Background(), "user", aliceFields); err != nil {
			t.Fatal(err)
		}
	}
	if n := obs.n.Load(); n != 1 { // then cached
		t.Errorf("observed %d queries, want 1", n)
	}
	must(t, os.Remove(path))
	if err := d.Ready(); err == nil {
		t.Error("Ready with the file gone")
	}
}

// TestLDAPReadyRefused points the pool at a loopback port nobody listens
// on: never connected, so nothing could be served, whatever on_outage says.
func TestLDAPReadyRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	ln.Close()
	for _, stale := range []bool{false, true} {
		cfg := Config{Backend: "ldap", BaseDN: "dc=example,dc=com", LDAP: LDAPConfig{URLs: []string{"ldap://" + addr}, InsecurePlaintext: true}}
		if stale {
			cfg.OnOutage = "serve_stale"
		}
		d, err := New(cfg, testLogger(t))
		must(t, err)
		startRun(t, d)
		if err := d.Ready(); err == nil {
			t.Errorf("serve_stale=%v: ready while the server refuses and nothing was ever answered", stale)
		}
	}
}

// fakeClock is a settable clock for the cache and the outage policy.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// useClock makes d's cache and outage policy read c (before any lookup).
func useClock(d *Directory, c *fakeClock) { d.s.now = c.now }

// connsBroken waits (bounded) until the pool has noticed that its
// connections are gone: the condition Ready and lookups then act on.
func connsBroken(t *testing.T, d *Directory) {
	t.Helper()
	p := d.be.(*ldapBackend).pool
	deadline := time.Now().Add(10 * time.Second)
	for p.anyUsable(-1) != nil {
		if time.Now().After(deadline) {
			t.Fatal("pool still holds a usable connection after the server died")
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// TestReadyFollowsOutagePolicy kills a real slapd and checks that Ready
// gives the same answer as the lookup path at every moment of the outage:
// serve_stale stays ready (and serves) until stale_max_age after the
// server's last answer, then both stop; deny is unready (and lookups fail)
// from the moment the connections break. Time is a fake clock, so the
// outage's length is exact and nothing sleeps.
func TestReadyFollowsOutagePolicy(t *testing.T) {
	const maxAge = time.Hour
	for _, mode := range []string{"serve_stale", "deny"} {
		t.Run(mode, func(t *testing.T) {
			s := startSlapd(t)
			d := newDir(t, "ldap", s, func(c *Config) {
				c.OnOutage = mode
				c.CacheTTL = Duration{time.Minute}
				c.StaleMaxAge = Duration{maxAge}
			})
			clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			useClock(d, clock)
			ctx := context.Background()
			if _, _, err := d.Lookup(ctx, "user", aliceFields); err != nil {
				t.Fatal(err)
			}
			if err := d.Ready(); err != nil {
				t.Fatalf("ready with the server up: %v", err)
			}
			s.kill()
			connsBroken(t, d)
			clock.advance(2 * time.Minute) // the cached answer has expired
			check := func(when string, wantReady bool) {
				t.Helper()
				rerr := d.Ready()
				_, _, lerr := d.Lookup(ctx, "user", aliceFields)
				if (rerr == nil) != wantReady || (lerr == nil) != wantReady {
					t.Fatalf("%s: Ready() = %v, Lookup err = %v; want ready=%v and lookups agreeing", when, rerr, lerr, wantReady)
				}
				if lerr != nil && !IsUnavailable(lerr) {
					t.Fatalf("%s: lookup error %v is not an outage", when, lerr)
				}
			}
			stale := mode == "serve_stale"
			check("just after the server died", stale)
			clock.advance(maxAge - 2*time.Minute - time.Second)
			check("one second before stale_max_age", stale)
			clock.advance(2 * time.Second)
			check("one second after stale_max_age", false)

			// The server returns. Nothing runs the pool's probes here:
			// Ready's own background redial brings it back.
			s.start()
			eventually(t, 15*time.Second, d.Ready)
			if _, _, err := d.Lookup(ctx, "user", aliceFields); err != nil {
				t.Fatalf("after the server returned: %v", err)
			}
		})
	}
}
