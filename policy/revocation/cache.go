package revocation

import (
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// ocspKey names one cached OCSP answer: the certificate (SHA-256 of its
// DER, which also pins its issuer) and the responder asked.
type ocspKey struct {
	cert      [32]byte
	responder string
}

type ocspEntry struct {
	r       policy.RevocationResult
	expires time.Time
}

// flight is one OCSP exchange in progress; others asking the same wait.
type flight struct {
	done      chan struct{}
	r         policy.RevocationResult // set before done is closed
	abandoned bool                    // the leader's caller gave up: ask again
}

// ocspCache is a bounded cache of OCSP answers with single-flight misses.
type ocspCache struct {
	max  int
	hold time.Duration // failures are cached this long; <0: not at all

	mu       sync.Mutex // guards the fields below
	entries  map[ocspKey]ocspEntry
	inflight map[ocspKey]*flight
	hits     uint64
	misses   uint64
}

func (c *ocspCache) init(max int, hold time.Duration) {
	c.max, c.hold = max, hold
	c.entries = make(map[ocspKey]ocspEntry)
	c.inflight = make(map[ocspKey]*flight)
}

func (c *ocspCache) get(k ocspKey, now time.Time) (policy.RevocationResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if ok && now.Before(e.expires) {
		c.hits++
		return e.r, true
	}
	return policy.RevocationResult{}, false
}

// join returns the flight for k, and whether the caller leads it (must run
// the exchange and call finish).
func (c *ocspCache) join(k ocspKey) (*flight, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.inflight[k]; f != nil {
		return f, false
	}
	c.misses++
	f := &flight{done: make(chan struct{})}
	c.inflight[k] = f
	return f, true
}

// finish stores the leader's result (see exchange for ttl) and releases the
// followers.
func (c *ocspCache) finish(k ocspKey, f *flight, r policy.RevocationResult, ttl time.Duration, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, k)
	f.r, f.abandoned = r, ttl == 0
	close(f.done)
	if ttl < 0 {
		ttl = c.hold
	}
	if ttl <= 0 {
		delete(c.entries, k)
		return
	}
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		c.evict(now)
	}
	c.entries[k] = ocspEntry{r: r, expires: now.Add(ttl)}
}

// evict makes room: every expired entry goes, and if that frees nothing,
// an eighth of the entries, chosen by map order (effectively at random).
func (c *ocspCache) evict(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	if len(c.entries) < c.max {
		return
	}
	n := len(c.entries) - c.max + 1 + c.max/8
	for k := range c.entries {
		if n <= 0 {
			break
		}
		delete(c.entries, k)
		n--
	}
}

// stats returns the cache's hits and misses (exchanges started).
func (c *ocspCache) stats() (hits, misses uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses
}
