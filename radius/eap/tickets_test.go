package eap

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for TicketCache.now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestCache(t testing.TB, cfg TicketCacheConfig) (*TicketCache, *fakeClock) {
	t.Helper()
	c, err := NewTicketCache(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.now = clk.now
	return c, clk
}

// put issues and commits a state, as an accepted conversation does.
func put(t testing.TB, c *TicketCache, state []byte) []byte {
	t.Helper()
	id, err := c.issue(state, c.generation())
	if err != nil {
		t.Fatal(err)
	}
	c.commit(id)
	return id[:]
}

func TestTicketCacheBounds(t *testing.T) {
	state := func(i, n int) []byte { return bytes.Repeat([]byte{byte(i)}, n) }
	t.Run("entries", func(t *testing.T) {
		c, _ := newTestCache(t, TicketCacheConfig{MaxEntries: 3})
		var ids [][]byte
		for i := range 5 {
			ids = append(ids, put(t, c, state(i, 10)))
		}
		if s := c.Stats(); s.Entries != 3 || s.Evicted != 2 || s.Bytes != 3*(10+ticketOverhead) {
			t.Fatalf("stats %+v", s)
		}
		for i, id := range ids {
			got := c.take(id)
			if want := i >= 2; (got != nil) != want {
				t.Errorf("ticket %d: found %v, want %v (oldest evicted first)", i, got != nil, want)
			}
			if got != nil && !bytes.Equal(got, state(i, 10)) {
				t.Errorf("ticket %d: wrong state", i)
			}
		}
	})
	t.Run("bytes", func(t *testing.T) {
		c, _ := newTestCache(t, TicketCacheConfig{MaxBytes: 3 * (1000 + ticketOverhead)})
		first := put(t, c, state(1, 1000))
		put(t, c, state(2, 1000))
		put(t, c, state(3, 1000))
		if s := c.Stats(); s.Entries != 3 || s.Evicted != 0 {
			t.Fatalf("stats %+v", s)
		}
		big := put(t, c, state(4, 2000)) // pushes out the two oldest
		if s := c.Stats(); s.Entries != 2 || s.Evicted != 2 || s.Bytes > 3*(1000+ticketOverhead) {
			t.Fatalf("stats %+v", s)
		}
		if c.take(first) != nil || c.take(big) == nil {
			t.Error("wrong entries evicted")
		}
		huge := put(t, c, state(5, 4000)) // larger than the whole budget: not kept
		if c.take(huge) != nil {
			t.Error("state over MaxBytes kept")
		}
		if s := c.Stats(); s.Bytes > 3*(1000+ticketOverhead) {
			t.Errorf("bytes %d over budget", s.Bytes)
		}
	})
}

func TestTicketCacheExpiry(t *testing.T) {
	c, clk := newTestCache(t, TicketCacheConfig{Lifetime: time.Hour})
	old := put(t, c, []byte("old"))
	clk.t = clk.t.Add(30 * time.Minute)
	mid := put(t, c, []byte("mid"))
	clk.t = clk.t.Add(31 * time.Minute)
	if c.take(old) != nil {
		t.Error("expired session resumed")
	}
	if c.take(mid) == nil {
		t.Error("live session not found")
	}
	// Expired sessions are also swept when new ones arrive.
	put(t, c, []byte("a"))
	clk.t = clk.t.Add(2 * time.Hour)
	put(t, c, []byte("b"))
	if s := c.Stats(); s.Entries != 1 || s.Expired != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestTicketCacheFlushAndGarbage(t *testing.T) {
	c, _ := newTestCache(t, TicketCacheConfig{})
	id := put(t, c, []byte("state"))
	gen := c.generation()
	c.Flush()
	if c.take(id) != nil {
		t.Error("session survived Flush")
	}
	// A handshake that started before the flush cannot store its session.
	stale, _ := c.issue([]byte("stale"), gen)
	c.commit(stale)
	if c.take(stale[:]) != nil {
		t.Error("session of a handshake started before Flush resumed")
	}
	// Pending (not accepted), used, malformed and unknown tickets miss.
	pending, _ := c.issue([]byte("pending"), c.generation())
	used := put(t, c, []byte("used"))
	c.take(used)
	for name, ticket := range map[string][]byte{
		"pending": pending[:], "used": used, "empty": nil, "short": id[:8], "long": append(id, 0),
		"unknown": bytes.Repeat([]byte{0xAA}, TicketIDLen),
	} {
		if c.take(ticket) != nil {
			t.Errorf("%s ticket resumed", name)
		}
	}
	c.drop(pending)
	if s := c.Stats(); s.Entries != 0 || s.Flushes != 1 || s.Resumed != 1 || s.Misses != 7 {
		t.Errorf("stats %+v", s)
	}
}

func TestTicketCacheConfig(t *testing.T) {
	for _, cfg := range []TicketCacheConfig{{MaxEntries: -1}, {MaxBytes: -1}, {Lifetime: -time.Second}} {
		if _, err := NewTicketCache(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}

// recordingCache is a client session cache that records the tickets the
// server sends.
type recordingCache struct {
	tls.ClientSessionCache
	mu      sync.Mutex
	tickets [][]byte
	forge   []byte // if set, stored sessions carry this ticket instead
}

func newRecordingCache() *recordingCache {
	return &recordingCache{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
}

func (r *recordingCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		ticket, state, err := cs.ResumptionState()
		if err == nil {
			r.mu.Lock()
			r.tickets = append(r.tickets, ticket)
			forge := r.forge
			r.mu.Unlock()
			if forge != nil {
				cs, _ = tls.NewResumptionState(forge, state)
			}
		}
	}
	r.ClientSessionCache.Put(key, cs)
}

func (r *recordingCache) last() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.tickets) == 0 {
		return nil
	}
	return r.tickets[len(r.tickets)-1]
}

// TestConversationResumption runs EAP-TLS conversations against a server
// with a TicketCache: tickets are TicketIDLen bytes and resume (TLS 1.2 and
// 1.3); a denied conversation leaves no session behind; after Flush, or with
// a garbage ticket, the login is a full handshake that succeeds.
func TestConversationResumption(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(fmt.Sprintf("tls%x", v), func(t *testing.T) {
			p := newPair(t, v, true)
			tc, err := NewTicketCache(TicketCacheConfig{})
			if err != nil {
				t.Fatal(err)
			}
			p.srv.Tickets = tc
			rec := newRecordingCache()
			p.client.ClientSessionCache = rec
			login := func(what string, accept, wantResumed bool) {
				t.Helper()
				var st tls.ConnectionState
				_, _, _, err := converseState(t, p, 300, accept, &st)
				if accept != (err == nil) {
					t.Fatalf("%s: %v", what, err)
				}
				if accept && st.DidResume != wantResumed {
					t.Errorf("%s: resumed %v, want %v", what, st.DidResume, wantResumed)
				}
				if n := len(rec.last()); n != TicketIDLen {
					t.Errorf("%s: ticket of %d bytes", what, n)
				}
			}
			login("first", true, false)
			login("second", true, true)
			login("third", true, true)
			if s := tc.Stats(); s.Entries != 1 || s.Resumed != 2 {
				t.Errorf("stats %+v: want one session, two resumptions", s)
			}
			tc.Flush()
			login("after flush", true, false)
			login("after flush, again", true, true)

			// Denied: the resumption is not accepted, and its new ticket
			// is dropped: the next login is a full handshake.
			login("denied", false, false)
			if s := tc.Stats(); s.Entries != 0 {
				t.Errorf("denied conversation left %d sessions", s.Entries)
			}
			login("after denial", true, false)

			rec.mu.Lock()
			rec.forge = bytes.Repeat([]byte{0x5A}, TicketIDLen)
			rec.mu.Unlock()
			login("forged next", true, true)
			login("garbage ticket", true, false)
			// One ticket per accepted login, never more (crypto/tls sends
			// one NewSessionTicket in TLS 1.3); the denied one gets none.
			rec.mu.Lock()
			if n := len(rec.tickets); n != 9 {
				t.Errorf("%d tickets for 9 accepted logins", n)
			}
			rec.mu.Unlock()
		})
	}
}

// FuzzTicketTake offers arbitrary tickets: never a panic, never a
// resumption, and a real ticket still resumes once.
func FuzzTicketTake(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{1}, TicketIDLen))
	f.Add(bytes.Repeat([]byte{1}, 200))
	f.Fuzz(func(t *testing.T, ticket []byte) {
		c, _ := newTestCache(t, TicketCacheConfig{MaxEntries: 4})
		id := put(t, c, []byte("state"))
		if bytes.Equal(ticket, id) {
			return
		}
		if c.take(ticket) != nil {
			t.Fatal("unknown ticket resumed")
		}
		if c.take(id) == nil || c.take(id) != nil {
			t.Fatal("real ticket did not resume exactly once")
		}
	})
}

// BenchmarkTicketCache is the cache's share of a login: issue, commit,
// take. The state is the serialized session (allocated by crypto/tls).
func BenchmarkTicketCache(b *testing.B) {
	c, err := NewTicketCache(TicketCacheConfig{MaxEntries: 1024})
	if err != nil {
		b.Fatal(err)
	}
	state := make([]byte, 1500)
	gen := c.generation()
	b.ReportAllocs()
	for b.Loop() {
		id, err := c.issue(state, gen)
		if err != nil {
			b.Fatal(err)
		}
		c.commit(id)
		if c.take(id[:]) == nil {
			b.Fatal("miss")
		}
	}
}

// BenchmarkResumption is a whole resumed EAP-TLS conversation in memory,
// both sides timed, with tickets from a TicketCache ("cache") and, for
// comparison, crypto/tls's self-contained tickets ("stdlib").
func BenchmarkResumption(b *testing.B) {
	for _, v := range []struct {
		name string
		max  uint16
	}{{"tls12", tls.VersionTLS12}, {"tls13", tls.VersionTLS13}} {
		for _, cached := range []bool{true, false} {
			name := v.name + "/stdlib"
			if cached {
				name = v.name + "/cache"
			}
			b.Run(name, func(b *testing.B) {
				p := newPair(b, v.max, true)
				if cached {
					tc, err := NewTicketCache(TicketCacheConfig{})
					if err != nil {
						b.Fatal(err)
					}
					p.srv.Tickets = tc
				}
				p.client.ClientSessionCache = tls.NewLRUClientSessionCache(4)
				if _, _, _, err := converse(b, p, 1020, true); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					var st tls.ConnectionState
					if _, _, _, err := converseState(b, p, 1020, true, &st); err != nil || !st.DidResume {
						b.Fatal(err, st.DidResume)
					}
				}
			})
		}
	}
}
