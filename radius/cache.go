package radius

import (
	"net/netip"
	"sync"
	"time"
)

// cacheKey identifies one request (RFC 5080 section 2.2.2): a retransmission
// repeats source, Identifier and Request Authenticator.
type cacheKey struct {
	cid  uint64 // RadSec connection, 0 for UDP: RFC 6614 keys per connection
	src  netip.AddrPort
	id   byte
	auth [16]byte
}

type cacheState uint8

const (
	cacheMiss cacheState = iota
	cacheBusy            // being processed: duplicates are dropped
	cacheHit             // answered: duplicates get the same bytes
)

type cacheEntry struct {
	reply []byte // nil while busy
	seq   uint64
}

type ringEntry struct {
	key     cacheKey
	seq     uint64
	expires time.Time
}

// replyCache remembers the replies of recent requests for ttl, holding at
// most max entries (oldest evicted first).
type replyCache struct {
	ttl time.Duration

	mu   sync.Mutex // guards the fields below
	m    map[cacheKey]cacheEntry
	ring []ringEntry // insertion order; fixed capacity
	head int
	n    int
	seq  uint64
}

func newReplyCache(max int, ttl time.Duration) *replyCache {
	return &replyCache{ttl: ttl, m: make(map[cacheKey]cacheEntry, max), ring: make([]ringEntry, max)}
}

func (c *replyCache) lookup(k *cacheKey) ([]byte, cacheState) {
	c.mu.Lock()
	e, ok := c.m[*k]
	c.mu.Unlock()
	switch {
	case !ok:
		return nil, cacheMiss
	case e.reply == nil:
		return nil, cacheBusy
	default:
		return e.reply, cacheHit
	}
}

// begin marks k busy; false if k is already known.
func (c *replyCache) begin(k *cacheKey, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[*k]; ok {
		return false
	}
	c.expireLocked(now)
	if c.n == len(c.ring) {
		c.popLocked()
	}
	c.seq++
	c.m[*k] = cacheEntry{seq: c.seq}
	c.ring[(c.head+c.n)%len(c.ring)] = ringEntry{key: *k, seq: c.seq, expires: now.Add(c.ttl)}
	c.n++
	return true
}

// complete stores the reply for k.
func (c *replyCache) complete(k *cacheKey, reply []byte) {
	c.mu.Lock()
	if e, ok := c.m[*k]; ok {
		e.reply = reply
		c.m[*k] = e
	}
	c.mu.Unlock()
}

// abandon forgets k (the request was dropped after all).
func (c *replyCache) abandon(k *cacheKey) {
	c.mu.Lock()
	delete(c.m, *k)
	c.mu.Unlock()
}

func (c *replyCache) expire(now time.Time) {
	c.mu.Lock()
	c.expireLocked(now)
	c.mu.Unlock()
}

func (c *replyCache) expireLocked(now time.Time) {
	for c.n > 0 && !c.ring[c.head].expires.After(now) {
		c.popLocked()
	}
}

func (c *replyCache) popLocked() {
	r := &c.ring[c.head]
	if e, ok := c.m[r.key]; ok && e.seq == r.seq {
		delete(c.m, r.key)
	}
	*r = ringEntry{}
	c.head = (c.head + 1) % len(c.ring)
	c.n--
}

func (c *replyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
