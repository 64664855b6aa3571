package vpn

import "net/netip"

// pool leases tunnel addresses. An address is named by its offset in the
// IPv4 pool; the IPv6 address, if any, has the same offset in the IPv6 pool.
// Offset 0 is the network, 1 the server, the last the broadcast address.
type pool struct {
	v4, v6 netip.Prefix
	size   uint32            // addresses in the IPv4 pool
	used   map[uint32]string // offset → fingerprint of the holder
	next   uint32            // where the next search starts
}

func newPool(v4, v6 netip.Prefix) *pool {
	return &pool{v4: v4, v6: v6, size: 1 << (32 - v4.Bits()), used: make(map[uint32]string), next: 2}
}

func (p *pool) first() uint32 { return 2 }
func (p *pool) last() uint32  { return p.size - 2 }

// allocate leases the next free address to fp; false if the pool is full.
func (p *pool) allocate(fp string) (uint32, bool) {
	n := p.last() - p.first() + 1
	o := p.next
	for i := uint32(0); i < n; i++ {
		if o < p.first() || o > p.last() {
			o = p.first()
		}
		if _, taken := p.used[o]; !taken {
			p.used[o] = fp
			p.next = o + 1
			return o, true
		}
		o++
	}
	return 0, false
}

// claim leases offset o to fp (restoring a lease); false if it is out of
// range or held by someone else.
func (p *pool) claim(o uint32, fp string) bool {
	if o < p.first() || o > p.last() {
		return false
	}
	if h, taken := p.used[o]; taken && h != fp {
		return false
	}
	p.used[o] = fp
	return true
}

func (p *pool) release(o uint32) { delete(p.used, o) }

// offset returns a's offset in the IPv4 pool.
func (p *pool) offset(a netip.Addr) (uint32, bool) {
	if !a.Is4() || !p.v4.Contains(a) {
		return 0, false
	}
	return be32(a.As4()) - be32(p.v4.Addr().As4()), true
}

// addrs returns the IPv4 and (if there is an IPv6 pool) IPv6 address of o.
func (p *pool) addrs(o uint32) (netip.Addr, netip.Addr) {
	b := be32(p.v4.Addr().As4()) + o
	v4 := netip.AddrFrom4([4]byte{byte(b >> 24), byte(b >> 16), byte(b >> 8), byte(b)})
	var v6 netip.Addr
	if p.v6.IsValid() {
		a := p.v6.Addr().As16()
		var carry uint32 = o
		for i := 15; i >= 0 && carry != 0; i-- {
			s := uint32(a[i]) + carry&0xff
			a[i] = byte(s)
			carry = carry>>8 + s>>8
		}
		v6 = netip.AddrFrom16(a)
	}
	return v4, v6
}

func be32(b [4]byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
