package directory

import (
	"strconv"
	"sync"
	"time"
)

// cacheEntry is one cached answer: an entry (found), no entry, or an
// ambiguous result (err).
type cacheEntry struct {
	dn      string
	groups  []string
	err     error
	fetched time.Time // when the server gave the answer
	expires time.Time // fresh until then
}

// cache holds answers by key, bounded in size, with expiry. Expired entries
// stay until evicted so that serve_stale can still use them.
type cache struct {
	size  int
	keep  time.Duration // how long past fetched an entry is worth keeping
	clock func() time.Time

	mu sync.RWMutex
	// guarded by mu
	m map[string]*cacheEntry
}

func newCache(size int, keep time.Duration) *cache {
	return &cache{size: size, keep: keep, clock: time.Now, m: make(map[string]*cacheEntry)}
}

// get returns the entry for key (fresh or not), or nil. It does not allocate.
func (c *cache) get(key []byte) *cacheEntry {
	c.mu.RLock()
	e := c.m[string(key)]
	c.mu.RUnlock()
	return e
}

func (c *cache) put(key string, e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.size {
		c.evictLocked(e.fetched)
	}
	c.m[key] = e
}

// evictLocked drops entries past their useful life, looking at a few; if
// none is, it drops an arbitrary one (map order is random).
func (c *cache) evictLocked(now time.Time) {
	n := 0
	var victim string
	dropped := false
	for k, e := range c.m {
		if victim == "" {
			victim = k
		}
		if now.Sub(e.fetched) > c.keep && now.After(e.expires) {
			delete(c.m, k)
			dropped = true
		}
		if n++; n >= 32 {
			break
		}
	}
	if !dropped {
		delete(c.m, victim)
	}
}

func (c *cache) flush() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// expireAll makes every entry expired, keeping it for serve_stale.
func (c *cache) expireAll() {
	now := c.clock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if e.expires.After(now) {
			cp := *e
			cp.expires = now
			c.m[k] = &cp
		}
	}
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// appendKey appends the cache key of a lookup: the kind and the values of
// the fields its template uses, length-prefixed so no value can forge
// another key.
func appendKey(b []byte, kind string, t *template, fields map[string]string) []byte {
	b = append(b, kind...)
	for _, n := range t.names {
		v := fields[n]
		b = append(b, 0)
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	return b
}

// flight is one in-progress lookup that concurrent identical lookups share.
type flight struct {
	done   chan struct{}
	dn     string
	groups []string
	err    error
	joined int // callers sharing it, the runner included; guarded by flights.mu
}

// flights collapses concurrent identical lookups into one query.
type flights struct {
	mu sync.Mutex
	// guarded by mu
	m map[string]*flight
}

// join returns the flight for key and whether the caller must run it.
func (f *flights) join(key string) (*flight, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl, ok := f.m[key]; ok {
		fl.joined++
		return fl, false
	}
	if f.m == nil {
		f.m = make(map[string]*flight)
	}
	fl := &flight{done: make(chan struct{}), joined: 1}
	f.m[key] = fl
	return fl, true
}

func (f *flights) finish(key string, fl *flight) {
	f.mu.Lock()
	delete(f.m, key)
	f.mu.Unlock()
	close(fl.done)
}
