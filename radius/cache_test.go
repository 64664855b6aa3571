package radius

import (
	"net/netip"
	"testing"
	"time"
)

func TestReplyCache(t *testing.T) {
	now := time.Now()
	c := newReplyCache(2, 10*time.Second)
	k := func(id byte) *cacheKey {
		return &cacheKey{src: netip.MustParseAddrPort("127.0.0.1:1"), id: id}
	}
	if _, st := c.lookup(k(1)); st != cacheMiss {
		t.Fatal("hit in an empty cache")
	}
	if !c.begin(k(1), now) || c.begin(k(1), now) {
		t.Fatal("begin: a key must be taken once")
	}
	if _, st := c.lookup(k(1)); st != cacheBusy {
		t.Fatal("not busy while in progress")
	}
	c.complete(k(1), []byte("r1"))
	if r, st := c.lookup(k(1)); st != cacheHit || string(r) != "r1" {
		t.Fatal("no hit after complete")
	}
	// Capacity 2: a third key evicts the oldest.
	c.begin(k(2), now)
	c.begin(k(3), now)
	if _, st := c.lookup(k(1)); st != cacheMiss {
		t.Error("oldest entry not evicted")
	}
	// Abandon then retake: the stale ring entry must not delete the new one.
	c.abandon(k(2))
	c.begin(k(2), now.Add(time.Second))
	c.begin(k(4), now.Add(time.Second)) // pops the old k(3) slot
	if _, st := c.lookup(k(2)); st != cacheBusy {
		t.Error("re-taken key lost")
	}
	// TTL.
	c.expire(now.Add(12 * time.Second))
	if c.len() != 0 {
		t.Errorf("%d entries after TTL", c.len())
	}
}
