package filter

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/gatehouse/gatehouse/policy"
)

// pkt builds an IPv4 or IPv6 packet with a TCP, UDP or ICMP header.
func pkt(src, dst string, proto uint8, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	var l4 []byte
	switch proto {
	case protoTCP:
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		l4[12] = 5 << 4
	case protoUDP:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint16(l4[4:], 8)
	case protoICMP, protoICMPv6:
		// sport = type, dport = echo id
		l4 = make([]byte, 8)
		l4[0] = uint8(sport)
		binary.BigEndian.PutUint16(l4[4:], dport)
	default:
		l4 = make([]byte, 8)
	}
	if s.Is4() {
		b := make([]byte, 20+len(l4))
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		b[8] = 64
		b[9] = proto
		s4, d4 := s.As4(), d.As4()
		copy(b[12:], s4[:])
		copy(b[16:], d4[:])
		copy(b[20:], l4)
		return b
	}
	b := make([]byte, 40+len(l4))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(l4)))
	b[6] = proto
	b[7] = 64
	s16, d16 := s.As16(), d.As16()
	copy(b[8:], s16[:])
	copy(b[24:], d16[:])
	copy(b[40:], l4)
	return b
}

// icmpErr builds an ICMP(v6) error of type typ quoting inner.
func icmpErr(src, dst string, typ uint8, inner []byte) []byte {
	proto := uint8(protoICMP)
	if netip.MustParseAddr(src).Is6() {
		proto = protoICMPv6
	}
	p := pkt(src, dst, proto, uint16(typ), 0)
	p = append(p, inner...)
	if proto == protoICMP {
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	} else {
		binary.BigEndian.PutUint16(p[4:], uint16(len(p)-40))
	}
	return p
}

func dest(s string, proto policy.Proto, ports ...uint16) policy.Destination {
	d := policy.Destination{Prefix: netip.MustParsePrefix(s), Proto: proto}
	for i := 0; i+1 < len(ports); i += 2 {
		d.Ports = append(d.Ports, policy.PortRange{First: ports[i], Last: ports[i+1]})
	}
	return d
}

var engineering = &policy.VPNAccess{Allow: []policy.Destination{
	dest("10.10.0.0/16", policy.ProtoAny),
	dest("10.20.0.5/32", policy.ProtoTCP, 22, 22, 443, 443),
	dest("10.0.0.53/32", policy.ProtoUDP, 53, 53),
	dest("10.1.0.0/16", policy.ProtoICMP),
	dest("fd00:10::/32", policy.ProtoTCP, 8000, 8100),
}}

var clientToClient = &policy.VPNAccess{Allow: []policy.Destination{dest("100.96.0.0/16", policy.ProtoAny)}}

func newTestFilter(t testing.TB) *Filter {
	f := New(Config{Pools: []netip.Prefix{netip.MustParsePrefix("100.96.0.0/16"), netip.MustParsePrefix("fd7a::/64")}})
	f.Update(func(u *Update) {
		u.Set(engineering, netip.MustParseAddr("100.96.0.2"), netip.MustParseAddr("fd7a::2"))
		u.Set(nil, netip.MustParseAddr("100.96.0.3"))
		u.Set(clientToClient, netip.MustParseAddr("100.96.0.4"))
	})
	return f
}

func TestFilter(t *testing.T) {
	const (
		tcp  = protoTCP
		udp  = protoUDP
		icmp = protoICMP
	)
	type step struct {
		out  bool // Outbound (client → network) else Inbound
		p    []byte
		want Reason
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"tcp allowed and reply", []step{
			{true, pkt("100.96.0.2", "10.20.0.5", tcp, 40000, 22), Accept},
			{false, pkt("10.20.0.5", "100.96.0.2", tcp, 22, 40000), Accept},
		}},
		{"reply without flow", []step{
			{false, pkt("10.20.0.5", "100.96.0.2", tcp, 22, 40001), NoFlow},
		}},
		{"reply from other port", []step{
			{true, pkt("100.96.0.2", "10.20.0.5", tcp, 40002, 443), Accept},
			{false, pkt("10.20.0.5", "100.96.0.2", tcp, 444, 40002), NoFlow},
		}},
		{"forbidden port", []step{{true, pkt("100.96.0.2", "10.20.0.5", tcp, 40000, 80), NotAllowed}}},
		{"forbidden host", []step{{true, pkt("100.96.0.2", "10.30.0.1", tcp, 40000, 22), NotAllowed}}},
		{"any proto in /16", []step{{true, pkt("100.96.0.2", "10.10.200.1", 47, 0, 0), Accept}}},
		{"udp dns", []step{
			{true, pkt("100.96.0.2", "10.0.0.53", udp, 5353, 53), Accept},
			{false, pkt("10.0.0.53", "100.96.0.2", udp, 53, 5353), Accept},
			{true, pkt("100.96.0.2", "10.0.0.53", tcp, 5353, 53), NotAllowed},
		}},
		{"icmp echo", []step{
			{true, pkt("100.96.0.2", "10.1.2.3", icmp, 8, 77), Accept},
			{false, pkt("10.1.2.3", "100.96.0.2", icmp, 0, 77), Accept},
			{false, pkt("10.1.2.3", "100.96.0.2", icmp, 0, 78), NoFlow},
			{false, pkt("10.1.2.3", "100.96.0.2", icmp, 8, 79), NoFlow},
		}},
		{"icmp not allowed elsewhere", []step{{true, pkt("100.96.0.2", "10.2.0.1", icmp, 8, 1), NotAllowed}}},
		{"rule with no access", []step{{true, pkt("100.96.0.3", "10.10.0.1", tcp, 1, 2), NotAllowed}}},
		{"no peer", []step{{true, pkt("100.96.9.9", "10.10.0.1", tcp, 1, 2), NoPeer}}},
		{"spoofed", []step{{true, pkt("192.168.1.1", "10.10.0.1", tcp, 1, 2), SpoofedSource}}},
		{"inbound to nobody", []step{{false, pkt("10.10.0.1", "100.96.9.9", tcp, 1, 2), NoPeer}}},
		{"client to client denied by default", []step{
			{true, pkt("100.96.0.2", "100.96.0.4", tcp, 1000, 22), NotAllowed},
		}},
		{"client to client when rule allows pool", []step{
			{true, pkt("100.96.0.4", "100.96.0.2", tcp, 1000, 22), Accept},
			{false, pkt("100.96.0.4", "100.96.0.2", tcp, 1000, 22), Accept},
			{true, pkt("100.96.0.2", "100.96.0.4", tcp, 22, 1000), Accept},
			{false, pkt("100.96.0.2", "100.96.0.4", tcp, 22, 1000), Accept},
			{true, pkt("100.96.0.2", "100.96.0.4", tcp, 22, 1001), NotAllowed},
		}},
		{"ipv6 ports", []step{
			{true, pkt("fd7a::2", "fd00:10::1", tcp, 5000, 8050), Accept},
			{false, pkt("fd00:10::1", "fd7a::2", tcp, 8050, 5000), Accept},
			{true, pkt("fd7a::2", "fd00:10::1", tcp, 5000, 8101), NotAllowed},
		}},
		{"icmp error for tracked flow", []step{
			{true, pkt("100.96.0.2", "10.20.0.5", tcp, 40000, 22), Accept},
			{false, icmpErr("10.9.9.9", "100.96.0.2", 3, pkt("100.96.0.2", "10.20.0.5", tcp, 40000, 22)), Accept},
			{false, icmpErr("10.9.9.9", "100.96.0.2", 3, pkt("100.96.0.2", "10.20.0.5", tcp, 40001, 22)), NoFlow},
			{false, icmpErr("10.9.9.9", "100.96.0.2", 3, pkt("100.96.0.3", "10.20.0.5", tcp, 40000, 22)), NoFlow},
			{false, icmpErr("10.9.9.9", "100.96.0.2", 3, []byte{0x45, 0}), NoFlow},
		}},
		{"icmpv6 packet too big for tracked flow", []step{
			{true, pkt("fd7a::2", "fd00:10::1", tcp, 5000, 8050), Accept},
			{false, icmpErr("fd00::1", "fd7a::2", 2, pkt("fd7a::2", "fd00:10::1", tcp, 5000, 8050)), Accept},
		}},
		{"ipv4-mapped in ipv6", []step{
			{true, pkt("fd7a::2", "::ffff:10.20.0.5", tcp, 1, 22), Malformed},
		}},
		{"malformed", []step{
			{true, []byte{0x45, 0, 0}, Malformed},
			{false, []byte{0x70}, Malformed},
			{true, pkt("100.96.0.2", "10.20.0.5", tcp, 40000, 22)[:30], Malformed},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFilter(t)
			for i, s := range tt.steps {
				var got Reason
				if s.out {
					got = f.Outbound(s.p, f.Now())
				} else {
					got = f.Inbound(s.p, f.Now())
				}
				if got != s.want {
					t.Fatalf("step %d: got %v, want %v", i, got, s.want)
				}
			}
		})
	}
}

func TestFlowExpiry(t *testing.T) {
	f := New(Config{UDPTimeout: 1e9})
	f.Update(func(u *Update) { u.Set(engineering, netip.MustParseAddr("100.96.0.2")) })
	if r := f.Outbound(pkt("100.96.0.2", "10.0.0.53", protoUDP, 5353, 53), 0); r != Accept {
		t.Fatal(r)
	}
	if r := f.Inbound(pkt("10.0.0.53", "100.96.0.2", protoUDP, 53, 5353), 2e9); r != NoFlow {
		t.Fatalf("expired flow: %v", r)
	}
}

func TestPeerRemovalDropsFlows(t *testing.T) {
	f := newTestFilter(t)
	f.Outbound(pkt("100.96.0.2", "10.20.0.5", protoTCP, 40000, 22), f.Now())
	f.Update(func(u *Update) { u.Remove(netip.MustParseAddr("100.96.0.2")) })
	if f.Flows() != 0 {
		t.Fatalf("flows left: %d", f.Flows())
	}
	if r := f.Inbound(pkt("10.20.0.5", "100.96.0.2", protoTCP, 22, 40000), f.Now()); r != NoPeer {
		t.Fatal(r)
	}
	if f.Dropped(NoPeer) != 1 {
		t.Fatal(f.Drops())
	}
}

func TestConntrackBounded(t *testing.T) {
	f := New(Config{MaxFlows: 1024})
	f.Update(func(u *Update) { u.Set(engineering, netip.MustParseAddr("100.96.0.2")) })
	for i := 0; i < 100000; i++ {
		f.Outbound(pkt("100.96.0.2", "10.10.0.1", protoUDP, uint16(i), uint16(i>>16)), f.Now())
	}
	if n := f.Flows(); n > 1024 {
		t.Fatalf("conntrack grew to %d", n)
	}
}

func TestRuleSetMatchesDestinationAllows(t *testing.T) {
	dests := engineering.Allow
	rs := Compile(dests)
	addrs := []string{"10.10.0.0", "10.10.255.255", "10.11.0.0", "10.9.255.255", "10.20.0.5", "10.20.0.4", "10.0.0.53", "10.1.3.4", "fd00:10::", "fd00:11::", "0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}
	for _, as := range addrs {
		a := netip.MustParseAddr(as)
		a16 := a.As16()
		for _, proto := range []policy.Proto{1, 6, 17, 47, 58} {
			for _, port := range []uint16{0, 22, 53, 443, 8000, 8100, 8101} {
				want := false
				for i := range dests {
					if dests[i].Allows(a, proto, port) {
						want = true
					}
				}
				got := rs.Allows(&a16, uint8(proto), port, proto == 6 || proto == 17)
				if got != want {
					t.Errorf("%s proto %d port %d: got %v want %v", as, proto, port, got, want)
				}
			}
		}
	}
}

func TestRuleSetRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randAddr := func(v6 bool) netip.Addr {
		if !v6 {
			return netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))})
		}
		var b [16]byte
		b[0], b[1], b[15] = 0xfd, byte(rng.IntN(4)), byte(rng.IntN(256))
		return netip.AddrFrom16(b)
	}
	fixed := []string{"0.0.0.0/0", "::/0", "::ffff:0:0/96", "::/1", "10.0.0.0/8", "fd00::/8"}
	for round := 0; round < 200; round++ {
		var dests []policy.Destination
		for i := 0; i < rng.IntN(12); i++ {
			a := randAddr(rng.IntN(2) == 0)
			bits := rng.IntN(a.BitLen() + 1)
			if a.Is4() {
				bits = 8 + rng.IntN(25)
			}
			d := policy.Destination{Prefix: netip.PrefixFrom(a, bits).Masked(), Proto: []policy.Proto{0, 1, 6, 17}[rng.IntN(4)]}
			if (d.Proto == 6 || d.Proto == 17) && rng.IntN(2) == 0 {
				lo := uint16(rng.IntN(100))
				d.Ports = []policy.PortRange{{First: lo, Last: lo + uint16(rng.IntN(10))}}
			}
			dests = append(dests, d)
		}
		if rng.IntN(4) == 0 {
			dests = append(dests, policy.Destination{Prefix: netip.MustParsePrefix(fixed[rng.IntN(len(fixed))])})
		}
		rs := Compile(dests)
		for i := 0; i < 300; i++ {
			a := randAddr(rng.IntN(2) == 0)
			proto := []policy.Proto{1, 6, 17, 58}[rng.IntN(4)]
			port := uint16(rng.IntN(120))
			want := false
			for j := range dests {
				if dests[j].Allows(a, proto, port) {
					want = true
				}
			}
			a16 := a.As16()
			if a.Is4() {
				a16 = netip.AddrFrom16(a.As16()).As16()
			}
			if got := rs.Allows(&a16, uint8(proto), port, proto == 6 || proto == 17); got != want {
				t.Fatalf("round %d: %s proto %d port %d: got %v want %v\n%v", round, a, proto, port, got, want, dests)
			}
		}
	}
}

// bigRules returns n destinations spread over 10.0.0.0/8, with ports.
func bigRules(n int) *policy.VPNAccess {
	acc := &policy.VPNAccess{}
	for i := 0; i < n; i++ {
		p := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0})
		acc.Allow = append(acc.Allow, dest(fmt.Sprintf("%s/24", p), policy.ProtoTCP, 22, 22, 443, 443, 8000, 8100))
	}
	return acc
}

func benchFilter(b *testing.B, rules, peers int) (*Filter, [][]byte, [][]byte) {
	f := New(Config{})
	acc := bigRules(rules)
	f.Update(func(u *Update) {
		for i := 0; i < peers; i++ {
			u.Set(acc, netip.AddrFrom4([4]byte{100, 96, byte((i + 2) >> 8), byte(i + 2)}))
		}
	})
	var out, in [][]byte
	for i := 0; i < 128; i++ {
		c := fmt.Sprintf("100.96.%d.%d", (i*77+2)>>8&0xff, (i*77+2)&0xff)
		s := fmt.Sprintf("10.%d.%d.9", (i*7)>>8&3, (i*7)&0xff)
		out = append(out, pkt(c, s, protoTCP, uint16(30000+i), 443))
		in = append(in, pkt(s, c, protoTCP, 443, uint16(30000+i)))
	}
	return f, out, in
}

func BenchmarkOutbound(b *testing.B) {
	f, out, _ := benchFilter(b, 1000, 10000)
	now := f.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if f.Outbound(out[i&127], now) != Accept {
			b.Fatal("dropped")
		}
	}
}

func BenchmarkInbound(b *testing.B) {
	f, out, in := benchFilter(b, 1000, 10000)
	now := f.Now()
	for _, p := range out {
		f.Outbound(p, now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if f.Inbound(in[i&127], now) != Accept {
			b.Fatal("dropped")
		}
	}
}

func BenchmarkOutboundParallel(b *testing.B) {
	f, out, _ := benchFilter(b, 1000, 10000)
	now := f.Now()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			f.Outbound(out[i&127], now)
			i++
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add(pkt("100.96.0.2", "10.20.0.5", protoTCP, 1, 2))
	f.Add(pkt("fd7a::2", "fd00::1", protoUDP, 1, 2))
	f.Add(pkt("100.96.0.2", "10.20.0.5", protoICMP, 8, 2))
	f.Add(pkt("fd7a::2", "fd00::1", protoICMPv6, 128, 2))
	f.Add([]byte{0x60})
	f.Add(icmpErr("10.9.9.9", "100.96.0.2", 3, pkt("100.96.0.2", "10.20.0.5", protoTCP, 40000, 22)))
	f.Add(icmpErr("fd00::1", "fd7a::2", 2, pkt("fd7a::2", "fd00:10::1", protoUDP, 5000, 8050)))
	flt := newTestFilter(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		Parse(b, &p)
		flt.Outbound(b, 0)
		flt.Inbound(b, 0)
	})
}
