package eap

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Server-side TLS sessions.
//
// crypto/tls's own session tickets carry the whole session state, the
// client's certificate chain included, encrypted: 1 KB for a leaf-only
// client, many KB for a long chain, all of it sent in the final flight of
// every handshake and so in extra EAP round trips. A TicketCache keeps the
// state on the server instead; the ticket on the wire is a random
// TicketIDLen-byte handle (Config.WrapSession / UnwrapSession), so the
// final flight stays small whatever the chain.
//
// A ticket becomes resumable only when its conversation is accepted
// (ServerSession.Accept): a denied or abandoned conversation leaves
// nothing behind, so only authorized clients occupy the cache. A ticket is
// used once: resuming removes it, and the resumed handshake issues a new
// one (TLS 1.2 and 1.3 alike). An unknown, expired, evicted or malformed
// ticket is ignored — the client gets a full handshake, never a failure.
// Flush drops every session (after a policy or trust change), also those of
// handshakes still running. Resumption never skips authorization: the
// caller authorizes the certificates restored from the session as for a
// full handshake.

// TicketIDLen is the length of a ticket issued by a TicketCache.
const TicketIDLen = 16

// Defaults of TicketCacheConfig.
const (
	DefaultTicketCacheEntries = 65536
	DefaultTicketCacheBytes   = 64 << 20
	DefaultTicketLifetime     = 24 * time.Hour
)

// ticketOverhead is the memory an entry costs besides its state: the entry
// and its map slot, approximately.
const ticketOverhead = 128

// TicketCacheConfig bounds a TicketCache. The zero value gives the defaults.
type TicketCacheConfig struct {
	// MaxEntries bounds the sessions kept; default
	// DefaultTicketCacheEntries. The oldest go first.
	MaxEntries int
	// MaxBytes bounds their memory: the serialized session states (mostly
	// the client's certificates) plus about 128 bytes each; default
	// DefaultTicketCacheBytes.
	MaxBytes int
	// Lifetime is how long after its handshake a session may be resumed;
	// default DefaultTicketLifetime.
	Lifetime time.Duration
}

// TicketStats counts a TicketCache's work since it was made.
type TicketStats struct {
	Entries int // sessions held now (resumable or pending)
	Bytes   int // their memory, as MaxBytes counts it

	Issued  uint64 // tickets handed to crypto/tls
	Resumed uint64 // tickets found and taken for a resumption
	Misses  uint64 // tickets offered but unknown, pending or malformed
	Expired uint64 // sessions past Lifetime, found or swept
	Evicted uint64 // sessions pushed out by MaxEntries or MaxBytes
	Flushes uint64 // calls to Flush
}

// TicketCache keeps TLS session state for ServerConfig.Tickets. It is safe
// for concurrent use.
type TicketCache struct {
	maxEntries, maxBytes int
	lifetime             time.Duration
	now                  func() time.Time

	mu         sync.Mutex // guards the fields below
	gen        uint64     // bumped by Flush
	m          map[[TicketIDLen]byte]*ticketEntry
	head, tail *ticketEntry // oldest first: insertion order is age order
	bytes      int
	stats      TicketStats
}

type ticketEntry struct {
	id         [TicketIDLen]byte
	state      []byte // tls.SessionState.Bytes
	created    time.Time
	resumable  bool // the conversation was accepted
	prev, next *ticketEntry
}

func (e *ticketEntry) cost() int { return cap(e.state) + ticketOverhead }

// NewTicketCache returns an empty cache bounded by cfg.
func NewTicketCache(cfg TicketCacheConfig) (*TicketCache, error) {
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultTicketCacheEntries
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultTicketCacheBytes
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = DefaultTicketLifetime
	}
	switch {
	case cfg.MaxEntries < 0:
		return nil, fmt.Errorf("eap: ticket cache: MaxEntries %d: must be positive", cfg.MaxEntries)
	case cfg.MaxBytes < 0:
		return nil, fmt.Errorf("eap: ticket cache: MaxBytes %d: must be positive", cfg.MaxBytes)
	case cfg.Lifetime < 0:
		return nil, fmt.Errorf("eap: ticket cache: Lifetime %v: must be positive", cfg.Lifetime)
	}
	return &TicketCache{
		maxEntries: cfg.MaxEntries,
		maxBytes:   cfg.MaxBytes,
		lifetime:   cfg.Lifetime,
		now:        time.Now,
		m:          make(map[[TicketIDLen]byte]*ticketEntry),
	}, nil
}

// Flush drops every session, resumable or pending, and makes handshakes
// that started before it unable to store theirs: no resumption crosses the
// change that called it.
func (t *TicketCache) Flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
	clear(t.m)
	t.head, t.tail, t.bytes = nil, nil, 0
	t.stats.Flushes++
}

// Stats returns the current counts.
func (t *TicketCache) Stats() TicketStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Entries, s.Bytes = len(t.m), t.bytes
	return s
}

// generation is the value a conversation records at its start and hands
// back to issue.
func (t *TicketCache) generation() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gen
}

var errTicketRandom = errors.New("eap: ticket cache: no randomness")

// issue stores a pending session state and returns its ticket. If the
// cache was flushed since generation gen, or the state alone exceeds
// MaxBytes, nothing is stored and the ticket will simply not resume.
func (t *TicketCache) issue(state []byte, gen uint64) ([TicketIDLen]byte, error) {
	e := &ticketEntry{state: state}
	if _, err := rand.Read(e.id[:]); err != nil {
		return e.id, errTicketRandom
	}
	now := t.now()
	e.created = now
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.Issued++
	if gen != t.gen || e.cost() > t.maxBytes {
		return e.id, nil
	}
	for t.head != nil && now.Sub(t.head.created) > t.lifetime {
		t.stats.Expired++
		t.removeLocked(t.head)
	}
	for t.head != nil && (len(t.m) >= t.maxEntries || t.bytes+e.cost() > t.maxBytes) {
		t.stats.Evicted++
		t.removeLocked(t.head)
	}
	if _, dup := t.m[e.id]; dup { // 2^-128: keep the first
		return e.id, nil
	}
	t.m[e.id] = e
	e.prev = t.tail
	if t.tail != nil {
		t.tail.next = e
	} else {
		t.head = e
	}
	t.tail = e
	t.bytes += e.cost()
	return e.id, nil
}

func (t *TicketCache) removeLocked(e *ticketEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		t.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		t.tail = e.prev
	}
	e.prev, e.next = nil, nil
	delete(t.m, e.id)
	t.bytes -= e.cost()
}

// commit makes a pending session resumable.
func (t *TicketCache) commit(id [TicketIDLen]byte) {
	t.mu.Lock()
	if e := t.m[id]; e != nil {
		e.resumable = true
	}
	t.mu.Unlock()
}

// drop forgets a session.
func (t *TicketCache) drop(id [TicketIDLen]byte) {
	t.mu.Lock()
	if e := t.m[id]; e != nil {
		t.removeLocked(e)
	}
	t.mu.Unlock()
}

// take removes and returns the resumable session state named by ticket,
// nil if there is none. An empty ticket (a TLS 1.2 client offering none) is
// not counted as a miss.
func (t *TicketCache) take(ticket []byte) []byte {
	if len(ticket) == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(ticket) != TicketIDLen {
		t.stats.Misses++
		return nil
	}
	e := t.m[[TicketIDLen]byte(ticket)]
	if e == nil || !e.resumable {
		t.stats.Misses++
		return nil
	}
	t.removeLocked(e)
	if t.now().Sub(e.created) > t.lifetime {
		t.stats.Expired++
		return nil
	}
	t.stats.Resumed++
	return e.state
}

// sessionTicket is a conversation's side of its TicketCache: the
// generation at its start and the ticket issued, pending until Accept.
type sessionTicket struct {
	cache *TicketCache
	gen   uint64

	mu     sync.Mutex // guards the fields below; wrap runs on the TLS goroutine
	id     [TicketIDLen]byte
	issued bool // id is pending in cache
	ended  bool // accepted or closed: nothing more to issue
}

// apply sets the ticket hooks of st on c (see perSession).
func (st *sessionTicket) apply(c *tls.Config) {
	c.WrapSession, c.UnwrapSession = st.wrap, st.unwrap
}

// wrap is Config.WrapSession: store the state, hand out the handle.
func (st *sessionTicket) wrap(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	b, err := ss.Bytes()
	if err != nil {
		return nil, err
	}
	id, err := st.cache.issue(b, st.gen)
	if err != nil {
		return nil, err
	}
	st.mu.Lock()
	prev, hadPrev, ended := st.id, st.issued, st.ended
	st.id, st.issued = id, !ended
	st.mu.Unlock()
	if hadPrev {
		st.cache.drop(prev)
	}
	if ended {
		st.cache.drop(id)
	}
	return id[:], nil
}

// unwrap is Config.UnwrapSession: an unknown ticket means a full
// handshake, never an error.
func (st *sessionTicket) unwrap(ticket []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
	b := st.cache.take(ticket)
	if b == nil {
		return nil, nil
	}
	ss, err := tls.ParseSessionState(b)
	if err != nil {
		return nil, nil
	}
	return ss, nil
}

// end makes the issued ticket resumable (accepted) or forgets it.
func (st *sessionTicket) end(accepted bool) {
	st.mu.Lock()
	id, issued := st.id, st.issued
	st.issued, st.ended = false, true
	st.mu.Unlock()
	switch {
	case !issued:
	case accepted:
		st.cache.commit(id)
	default:
		st.cache.drop(id)
	}
}
