package filter

import (
	"sync"
	"time"
)

// flowKey names a flow from the client's side: the client (a tunnel
// address) talks to remote. ICMP echo flows use the identifier as both ports.
type flowKey struct {
	client, remote [16]byte
	cport, rport   uint16
	proto          uint8
}

const numShards = 64

// conntrack is a bounded table of flows allowed client → network, so that
// replies network → client can be recognized. It is sharded by a hash of the
// key; each shard holds at most max/numShards flows. When a shard is full,
// expired flows are swept and, if none expired, the flow closest to expiry
// among a few sampled is evicted: a new flow always gets in.
type conntrack struct {
	perShard int
	shards   [numShards]ctShard
}

type ctShard struct {
	mu        sync.Mutex // guards flows and lastSweep
	flows     map[flowKey]int64
	lastSweep int64
	_         [32]byte // keep shards on separate cache lines
}

func newConntrack(max int) *conntrack {
	per := max / numShards
	if per < 4 {
		per = 4
	}
	ct := &conntrack{perShard: per}
	for i := range ct.shards {
		ct.shards[i].flows = make(map[flowKey]int64, per)
	}
	return ct
}

func (k *flowKey) shard() int {
	h := uint32(k.client[12])<<24 | uint32(k.client[13])<<16 | uint32(k.client[14])<<8 | uint32(k.client[15])
	h ^= uint32(k.client[7]) << 5
	h ^= uint32(k.remote[15])<<11 | uint32(k.remote[14])<<3
	h ^= uint32(k.cport)*0x9e3779b1 ^ uint32(k.rport)
	h *= 0x85ebca6b
	return int(h >> 26)
}

// refreshAfter avoids writing a flow's expiry on every packet.
const refreshAfter = int64(time.Second)

// track records or refreshes k until now+ttl.
func (ct *conntrack) track(k *flowKey, now, ttl int64) {
	s := &ct.shards[k.shard()]
	exp := now + ttl
	s.mu.Lock()
	old, ok := s.flows[*k]
	if ok {
		if exp-old > refreshAfter {
			s.flows[*k] = exp
		}
		s.mu.Unlock()
		return
	}
	if len(s.flows) >= ct.perShard {
		s.evict(now, ct.perShard)
	}
	s.flows[*k] = exp
	s.mu.Unlock()
}

// lookup reports whether k is a live flow, refreshing it if so.
func (ct *conntrack) lookup(k *flowKey, now, ttl int64) bool {
	s := &ct.shards[k.shard()]
	s.mu.Lock()
	exp, ok := s.flows[*k]
	if ok && exp < now {
		delete(s.flows, *k)
		ok = false
	}
	if ok && now+ttl-exp > refreshAfter {
		s.flows[*k] = now + ttl
	}
	s.mu.Unlock()
	return ok
}

// evict makes room in a full shard. s.mu must be held. Expired flows are
// swept at most once a second per shard; otherwise the flow closest to
// expiry among a few sampled goes.
func (s *ctShard) evict(now int64, max int) {
	if now-s.lastSweep > int64(time.Second) {
		s.lastSweep = now
		for k, exp := range s.flows {
			if exp < now {
				delete(s.flows, k)
			}
		}
	}
	if len(s.flows) < max {
		return
	}
	var victim flowKey
	best := int64(1<<63 - 1)
	n := 0
	for k, exp := range s.flows {
		if exp < best {
			best, victim = exp, k
		}
		if n++; n == 8 {
			break
		}
	}
	delete(s.flows, victim)
}

// removeClients drops every flow of the given client addresses (peers
// removed), in one pass.
func (ct *conntrack) removeClients(gone map[[16]byte]bool) {
	for i := range ct.shards {
		s := &ct.shards[i]
		s.mu.Lock()
		for k := range s.flows {
			if gone[k.client] || gone[k.remote] {
				delete(s.flows, k)
			}
		}
		s.mu.Unlock()
	}
}

// len returns the number of flows (live or not yet swept).
func (ct *conntrack) len() int {
	n := 0
	for i := range ct.shards {
		s := &ct.shards[i]
		s.mu.Lock()
		n += len(s.flows)
		s.mu.Unlock()
	}
	return n
}
