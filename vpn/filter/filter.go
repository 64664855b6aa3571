// Package filter is gatehouse's VPN packet filter: a tun.Device wrapper that
// checks every packet a WireGuard peer sends (client → network) against the
// compiled destinations of that peer's policy rule, tracks the flows it
// admits, and lets only replies to those flows back (network → client).
//
// The peer table and compiled rule sets are immutable and swapped whole
// through an atomic.Pointer; the per-packet path takes no lock except one
// shard of the connection tracker, and allocates nothing.
package filter

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// Reason says why a packet was dropped.
type Reason uint8

// Drop reasons.
const (
	Accept        Reason = iota // not dropped
	NoPeer                      // no peer owns the tunnel address
	SpoofedSource               // client → network source outside every address pool
	NotAllowed                  // the peer's rule does not allow the destination
	NoFlow                      // network → client packet that answers no tracked flow
	Malformed                   // unparseable packet
	numReasons
)

var reasonNames = [numReasons]string{"accepted", "no_peer", "spoofed_source", "not_allowed", "no_flow", "malformed"}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Config sets the filter's pools and connection-tracking limits. Zero values
// take the defaults shown.
type Config struct {
	// Pools are the tunnel address pools; a client → network packet whose
	// source is outside all of them counts as spoofed_source, inside but
	// unowned as no_peer.
	Pools []netip.Prefix
	// MaxFlows bounds the connection tracker (default 262144).
	MaxFlows int
	// Idle timeouts of tracked flows: TCP (default 30m), UDP (default 2m),
	// ICMP echo (default 30s).
	TCPTimeout, UDPTimeout, ICMPTimeout time.Duration
}

// Filter holds the compiled peer table and the connection tracker. It is safe
// for concurrent use.
type Filter struct {
	pools []netip.Prefix
	ttl   [256]int64 // per protocol idle timeout, nanoseconds
	ct    *conntrack
	table atomic.Pointer[table]
	drops [numReasons]atomic.Uint64
	epoch time.Time  // base of the monotonic clock used for expiry
	mu    sync.Mutex // serializes table writers; guards cache
	cache map[*policy.VPNAccess]*RuleSet
}

// table is one immutable generation of the peer table.
type table struct {
	peers4 map[uint32]*RuleSet
	peers6 map[[16]byte]*RuleSet
}

// New returns a Filter with no peers: everything is dropped.
func New(cfg Config) *Filter {
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = 1 << 18
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.TCPTimeout, 30*time.Minute)
	def(&cfg.UDPTimeout, 2*time.Minute)
	def(&cfg.ICMPTimeout, 30*time.Second)
	f := &Filter{
		pools: cfg.Pools,
		ct:    newConntrack(cfg.MaxFlows),
		epoch: time.Now(),
		cache: make(map[*policy.VPNAccess]*RuleSet),
	}
	for i := range f.ttl {
		f.ttl[i] = int64(cfg.UDPTimeout)
	}
	f.ttl[protoTCP] = int64(cfg.TCPTimeout)
	f.ttl[protoICMP] = int64(cfg.ICMPTimeout)
	f.ttl[protoICMPv6] = int64(cfg.ICMPTimeout)
	f.table.Store(&table{peers4: map[uint32]*RuleSet{}, peers6: map[[16]byte]*RuleSet{}})
	return f
}

// Now returns the filter's clock, for Outbound and Inbound.
func (f *Filter) Now() int64 { return int64(time.Since(f.epoch)) }

// Update is one batch of peer changes, applied with a single swap.
type Update struct {
	f   *Filter
	t   *table
	del [][16]byte
}

// Set makes addrs belong to a peer allowed access (nil access: nothing).
func (u *Update) Set(access *policy.VPNAccess, addrs ...netip.Addr) {
	rs := u.f.compile(access)
	for _, a := range addrs {
		if a.Is4() {
			u.t.peers4[a4(a)] = rs
		} else if a.IsValid() {
			u.t.peers6[a.As16()] = rs
		}
	}
}

// Remove forgets addrs and every flow from them.
func (u *Update) Remove(addrs ...netip.Addr) {
	for _, a := range addrs {
		if a.Is4() {
			delete(u.t.peers4, a4(a))
		} else if a.IsValid() {
			delete(u.t.peers6, a.As16())
		}
		if a.IsValid() {
			u.del = append(u.del, netip.AddrFrom16(a.As16()).As16())
		}
	}
}

// Update applies fn's changes to a copy of the peer table and swaps it in.
func (f *Filter) Update(fn func(*Update)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.table.Load()
	t := &table{
		peers4: make(map[uint32]*RuleSet, len(old.peers4)+1),
		peers6: make(map[[16]byte]*RuleSet, len(old.peers6)+1),
	}
	for k, v := range old.peers4 {
		t.peers4[k] = v
	}
	for k, v := range old.peers6 {
		t.peers6[k] = v
	}
	u := &Update{f: f, t: t}
	fn(u)
	f.table.Store(t)
	if len(u.del) > 0 {
		gone := make(map[[16]byte]bool, len(u.del))
		for _, a := range u.del {
			gone[a] = true
		}
		f.ct.removeClients(gone)
	}
	// Drop compiled rule sets no peer uses any more.
	used := make(map[*RuleSet]bool)
	for _, v := range t.peers4 {
		used[v] = true
	}
	for _, v := range t.peers6 {
		used[v] = true
	}
	for k, v := range f.cache {
		if !used[v] {
			delete(f.cache, k)
		}
	}
}

// compile returns the shared RuleSet for access. f.mu must be held.
func (f *Filter) compile(access *policy.VPNAccess) *RuleSet {
	if access == nil {
		return emptyRules
	}
	if rs, ok := f.cache[access]; ok {
		return rs
	}
	rs := Compile(access.Allow)
	f.cache[access] = rs
	return rs
}

var emptyRules = &RuleSet{}

func a4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (t *table) lookup(a *[16]byte, v6 bool) *RuleSet {
	if !v6 {
		return t.peers4[uint32(a[12])<<24|uint32(a[13])<<16|uint32(a[14])<<8|uint32(a[15])]
	}
	return t.peers6[*a]
}

func (f *Filter) inPool(a *[16]byte, v6 bool) bool {
	var addr netip.Addr
	if v6 {
		addr = netip.AddrFrom16(*a)
	} else {
		addr = netip.AddrFrom4([4]byte(a[12:16]))
	}
	for _, p := range f.pools {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Outbound decides a client → network packet (one that WireGuard writes to
// the TUN device). A packet passes when the source client's rule allows its
// destination (TCP/UDP flows and ICMP echo requests are then tracked), or
// when it answers a flow another client opened to this one.
func (f *Filter) Outbound(pkt []byte, now int64) Reason { return f.outbound(pkt, now, nil) }

// batchCache remembers the last flow accepted within one batch, so the
// packets of a bulk transfer that follow it skip the rule and flow lookups.
// It lives on the stack of one Read or Write call.
type batchCache struct {
	key   flowKey
	valid bool
}

// match reports whether p is the flow c holds. Kept out of line so that
// the uncached path (Outbound, Inbound) stays small.
//
//go:noinline
func (c *batchCache) match(p *Packet) bool {
	return c.valid && p.HasPorts && !p.ICMPReply && c.key.cport == p.SrcPort && c.key.rport == p.DstPort &&
		c.key.proto == p.Proto && c.key.client == p.Src && c.key.remote == p.Dst
}

func (c *batchCache) hit(k *flowKey) bool { return c != nil && c.valid && c.key == *k }

func (c *batchCache) set(k *flowKey) {
	if c != nil {
		c.key, c.valid = *k, true
	}
}

func (f *Filter) outbound(pkt []byte, now int64, c *batchCache) Reason {
	var p Packet
	if !Parse(pkt, &p) {
		return f.drop(Malformed)
	}
	if c != nil && c.match(&p) {
		return Accept
	}
	t := f.table.Load()
	rs := t.lookup(&p.Src, p.IPv6)
	if rs == nil {
		if !f.inPool(&p.Src, p.IPv6) {
			return f.drop(SpoofedSource)
		}
		return f.drop(NoPeer)
	}
	if !p.ICMPReply && rs.Allows(&p.Dst, p.Proto, p.DstPort, p.HasPorts && !p.ICMPEcho) {
		if p.HasPorts {
			k := flowKey{client: p.Src, remote: p.Dst, cport: p.SrcPort, rport: p.DstPort, proto: p.Proto}
			f.ct.track(&k, now, f.ttl[p.Proto])
			c.set(&k)
		}
		return Accept
	}
	// A reply to a flow another client opened to this one.
	if p.HasPorts && !p.ICMPEcho && t.lookup(&p.Dst, p.IPv6) != nil {
		k := flowKey{client: p.Dst, remote: p.Src, cport: p.DstPort, rport: p.SrcPort, proto: p.Proto}
		if f.ct.lookup(&k, now, f.ttl[p.Proto]) {
			return Accept
		}
	}
	return f.drop(NotAllowed)
}

// Inbound decides a network → client packet (one that WireGuard reads from
// the TUN device to send to a peer): only replies to flows the destination
// client opened pass, and packets of flows another client opened to it.
func (f *Filter) Inbound(pkt []byte, now int64) Reason { return f.inbound(pkt, now, nil) }

func (f *Filter) inbound(pkt []byte, now int64, c *batchCache) Reason {
	var p Packet
	if !Parse(pkt, &p) {
		return f.drop(Malformed)
	}
	t := f.table.Load()
	if t.lookup(&p.Dst, p.IPv6) == nil {
		return f.drop(NoPeer)
	}
	if p.ICMPError {
		// An error about a packet the client sent on a tracked flow
		// (path MTU discovery, port unreachable, TTL exceeded).
		var e Packet
		if parseEmbedded(p.embedded, p.IPv6, &e) && e.Src == p.Dst {
			k := flowKey{client: e.Src, remote: e.Dst, cport: e.SrcPort, rport: e.DstPort, proto: e.Proto}
			if f.ct.lookup(&k, now, 0) {
				return Accept
			}
		}
		return f.drop(NoFlow)
	}
	if !p.HasPorts {
		return f.drop(NoFlow)
	}
	if !p.ICMPEcho {
		k := flowKey{client: p.Dst, remote: p.Src, cport: p.DstPort, rport: p.SrcPort, proto: p.Proto}
		if c.hit(&k) {
			return Accept
		}
		if f.ct.lookup(&k, now, f.ttl[p.Proto]) {
			c.set(&k)
			return Accept
		}
	}
	if !p.ICMPReply && t.lookup(&p.Src, p.IPv6) != nil {
		k := flowKey{client: p.Src, remote: p.Dst, cport: p.SrcPort, rport: p.DstPort, proto: p.Proto}
		if f.ct.lookup(&k, now, f.ttl[p.Proto]) {
			return Accept
		}
	}
	return f.drop(NoFlow)
}

func (f *Filter) drop(r Reason) Reason {
	f.drops[r].Add(1)
	return r
}

// Drops returns the number of packets dropped, by reason name.
func (f *Filter) Drops() map[string]uint64 {
	m := make(map[string]uint64, numReasons-1)
	for r := NoPeer; r < numReasons; r++ {
		m[r.String()] = f.drops[r].Load()
	}
	return m
}

// Dropped returns the count for one reason.
func (f *Filter) Dropped(r Reason) uint64 {
	if r >= numReasons {
		return 0
	}
	return f.drops[r].Load()
}

// Flows returns the number of entries in the connection tracker.
func (f *Filter) Flows() int { return f.ct.len() }
