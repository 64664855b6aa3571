package filter

import (
	"net/netip"
	"slices"

	"github.com/gatehouse/gatehouse/policy"
)

// u128 is an address as two big-endian halves; IPv4 is IPv4-mapped.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (a u128) next() (u128, bool) {
	lo := a.lo + 1
	hi := a.hi
	if lo == 0 {
		hi++
		if hi == 0 {
			return u128{}, false
		}
	}
	return u128{hi, lo}, true
}

func u128From16(b *[16]byte) u128 {
	return u128{
		hi: uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
			uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7]),
		lo: uint64(b[8])<<56 | uint64(b[9])<<48 | uint64(b[10])<<40 | uint64(b[11])<<32 |
			uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15]),
	}
}

// prefixRange returns the first and last address of p in 128-bit form.
func prefixRange(p netip.Prefix) (first, last u128) {
	p = p.Masked()
	a := p.Addr()
	bits := p.Bits()
	if a.Is4() {
		a = netip.AddrFrom16(a.As16())
		bits += 96
	}
	b := a.As16()
	first = u128From16(&b)
	last = first
	host := 128 - bits
	switch {
	case host >= 64:
		last.lo = ^uint64(0)
		if host > 64 {
			last.hi |= ^uint64(0) >> (128 - host)
		}
	case host > 0:
		last.lo |= ^uint64(0) >> (64 - host)
	}
	return first, last
}

// IPv4 addresses live in ::ffff:0:0/96 (hi == 0, lo>>32 == 0xffff).
var v4lo, v4hi = u128{0, 0xffff << 32}, u128{0, 0xffff<<32 | 0xffffffff}

// grant is what one address interval allows.
type grant struct {
	any   bool        // every protocol and port
	proto []protoRule // otherwise: per protocol
}

type protoRule struct {
	proto   uint8
	anyPort bool
	ports   []policy.PortRange
}

func (g *grant) allows(proto uint8, port uint16, hasPort bool) bool {
	if g.any {
		return true
	}
	for i := range g.proto {
		r := &g.proto[i]
		if r.proto != proto {
			continue
		}
		if r.anyPort {
			return true
		}
		if !hasPort {
			return false
		}
		for _, pr := range r.ports {
			if port >= pr.First && port <= pr.Last {
				return true
			}
		}
		return false
	}
	return false
}

func (g *grant) add(d *policy.Destination) {
	if g.any {
		return
	}
	switch d.Proto {
	case policy.ProtoAny:
		g.any, g.proto = true, nil
		return
	case policy.ProtoICMP, policy.ProtoICMPv6:
		g.addProto(protoICMP, nil)
		g.addProto(protoICMPv6, nil)
		return
	}
	g.addProto(uint8(d.Proto), d.Ports)
}

func (g *grant) addProto(proto uint8, ports []policy.PortRange) {
	for i := range g.proto {
		r := &g.proto[i]
		if r.proto != proto {
			continue
		}
		if r.anyPort {
			return
		}
		if len(ports) == 0 {
			r.anyPort, r.ports = true, nil
			return
		}
		r.ports = append(r.ports, ports...)
		return
	}
	r := protoRule{proto: proto, anyPort: len(ports) == 0}
	if !r.anyPort {
		r.ports = append([]policy.PortRange(nil), ports...)
	}
	g.proto = append(g.proto, r)
}

// RuleSet is a compiled, immutable list of destinations: the address space
// cut into disjoint intervals, each with what it allows. A lookup is a binary
// search over interval starts. One RuleSet is shared by every peer whose
// decision carries the same *policy.VPNAccess.
type RuleSet struct {
	starts []u128  // sorted interval starts
	grants []int32 // per interval: index into set, or -1 for nothing
	set    []grant

	// The IPv4 part again, with 32-bit starts: smaller, so faster to search.
	starts4 []uint32
	grants4 []int32
}

// Compile builds a RuleSet from destinations. Invalid prefixes are skipped.
func Compile(dests []policy.Destination) *RuleSet {
	type span struct {
		first, last u128
		d           *policy.Destination
	}
	spans := make([]span, 0, len(dests))
	bounds := make([]u128, 0, 2*len(dests)+1)
	bounds = append(bounds, u128{})
	for i := range dests {
		d := &dests[i]
		if !d.Prefix.IsValid() {
			continue
		}
		f, l := prefixRange(d.Prefix)
		add := func(f, l u128) {
			spans = append(spans, span{f, l, d})
			bounds = append(bounds, f)
			if n, ok := l.next(); ok {
				bounds = append(bounds, n)
			}
		}
		if !d.Prefix.Addr().Is6() || l.less(v4lo) || v4hi.less(f) {
			add(f, l)
			continue
		}
		// An IPv6 prefix covering ::ffff:0:0/96 must not admit IPv4
		// packets (which live there): keep the parts around it.
		if f.less(v4lo) {
			p, _ := prev(v4lo)
			add(f, p)
		}
		if v4hi.less(l) {
			n, _ := v4hi.next()
			add(n, l)
		}
	}
	slices.SortFunc(bounds, func(a, b u128) int {
		switch {
		case a.less(b):
			return -1
		case b.less(a):
			return 1
		}
		return 0
	})
	bounds = slices.Compact(bounds)
	rs := &RuleSet{starts: bounds, grants: make([]int32, len(bounds))}
	// Identical grants are stored once; key by the set of spans covering.
	for i, start := range bounds {
		var g grant
		covered := false
		for _, s := range spans {
			if !start.less(s.first) && !s.last.less(start) {
				g.add(s.d)
				covered = true
			}
		}
		if !covered {
			rs.grants[i] = -1
			continue
		}
		rs.grants[i] = int32(len(rs.set))
		rs.set = append(rs.set, g)
	}
	for i, start := range rs.starts {
		end := u128{^uint64(0), ^uint64(0)}
		if i+1 < len(rs.starts) {
			end, _ = prev(rs.starts[i+1])
		}
		if end.less(v4lo) || v4hi.less(start) {
			continue
		}
		first := uint32(0)
		if v4lo.less(start) {
			first = uint32(start.lo)
		}
		rs.starts4 = append(rs.starts4, first)
		rs.grants4 = append(rs.grants4, rs.grants[i])
	}
	return rs
}

func prev(a u128) (u128, bool) {
	if a.lo == 0 {
		if a.hi == 0 {
			return u128{}, false
		}
		return u128{a.hi - 1, ^uint64(0)}, true
	}
	return u128{a.hi, a.lo - 1}, true
}

// Allows reports whether the rule set admits a packet to dst.
func (rs *RuleSet) Allows(dst *[16]byte, proto uint8, port uint16, hasPort bool) bool {
	if rs == nil || len(rs.starts) == 0 {
		return false
	}
	if [12]byte(dst[:12]) == v4Prefix {
		a := be32(dst[12:])
		lo, hi := 0, len(rs.starts4)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if a < rs.starts4[m] {
				hi = m
			} else {
				lo = m + 1
			}
		}
		if lo == 0 {
			return false
		}
		gi := rs.grants4[lo-1]
		if gi < 0 {
			return false
		}
		return rs.set[gi].allows(proto, port, hasPort)
	}
	a := u128From16(dst)
	// Find the last start <= a.
	lo, hi := 0, len(rs.starts)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if a.less(rs.starts[m]) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	if lo == 0 {
		return false
	}
	gi := rs.grants[lo-1]
	if gi < 0 {
		return false
	}
	return rs.set[gi].allows(proto, port, hasPort)
}

func be32(b []byte) uint32 {
	_ = b[3]
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
