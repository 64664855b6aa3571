package filter

import "encoding/binary"

// Packet is the part of an IP packet the filter looks at. Addresses are
// 16 bytes, IPv4 in IPv4-mapped IPv6 form, so one code path serves both
// families.
type Packet struct {
	Src, Dst  [16]byte
	IPv6      bool
	Proto     uint8  // transport protocol (after IPv6 extension headers)
	SrcPort   uint16 // TCP/UDP source port; ICMP echo identifier
	DstPort   uint16 // TCP/UDP destination port; ICMP echo identifier
	ICMPType  uint8
	HasPorts  bool // ports (or an ICMP echo identifier) were read
	Fragment  bool // a non-first fragment: no transport header
	ICMPEcho  bool // ICMP or ICMPv6 echo request
	ICMPReply bool // ICMP or ICMPv6 echo reply
	ICMPError bool // an ICMP error (unreachable, too big, time exceeded, parameter problem)

	embedded []byte // the quoted packet of an ICMP error
}

const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58

	icmp4EchoReply   = 0
	icmp4EchoRequest = 8
	icmp6EchoRequest = 128
	icmp6EchoReply   = 129
)

var v4Prefix = [12]byte{10: 0xff, 11: 0xff}

// Parse reads the IPv4 or IPv6 header of pkt and the transport header that
// follows, if any. It reports false for anything malformed: truncated
// headers, a length field larger than the buffer, an unknown IP version, or
// too many IPv6 extension headers. It never allocates.
func Parse(pkt []byte, p *Packet) bool {
	*p = Packet{}
	if len(pkt) < 1 {
		return false
	}
	var l4 []byte
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return false
		}
		ihl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:4]))
		if ihl < 20 || total < ihl || total > len(pkt) {
			return false
		}
		copy(p.Src[:12], v4Prefix[:])
		copy(p.Src[12:], pkt[12:16])
		copy(p.Dst[:12], v4Prefix[:])
		copy(p.Dst[12:], pkt[16:20])
		p.Proto = pkt[9]
		if binary.BigEndian.Uint16(pkt[6:8])&0x1fff != 0 {
			p.Fragment = true
			return true
		}
		l4 = pkt[ihl:total]
	case 6:
		if len(pkt) < 40 {
			return false
		}
		total := 40 + int(binary.BigEndian.Uint16(pkt[4:6]))
		if total > len(pkt) {
			return false
		}
		p.IPv6 = true
		copy(p.Src[:], pkt[8:24])
		copy(p.Dst[:], pkt[24:40])
		if [12]byte(p.Src[:12]) == v4Prefix || [12]byte(p.Dst[:12]) == v4Prefix {
			return false // IPv4-mapped addresses never appear on the wire (RFC 4291 2.5.5.2)
		}
		next := pkt[6]
		off := 40
		for i := 0; ; i++ {
			if i == 8 {
				return false
			}
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if off+8 > total {
					return false
				}
				n := off + 8 + int(pkt[off+1])*8
				next = pkt[off]
				off = n
				continue
			case 44: // fragment
				if off+8 > total {
					return false
				}
				fragOff := binary.BigEndian.Uint16(pkt[off+2:off+4]) &^ 7
				next = pkt[off]
				off += 8
				if fragOff != 0 {
					p.Proto = next
					p.Fragment = true
					return true
				}
				continue
			}
			break
		}
		if off > total {
			return false
		}
		p.Proto = next
		l4 = pkt[off:total]
	default:
		return false
	}
	switch p.Proto {
	case protoTCP:
		if len(l4) < 20 {
			return false
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		p.DstPort = binary.BigEndian.Uint16(l4[2:4])
		p.HasPorts = true
	case protoUDP:
		if len(l4) < 8 {
			return false
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		p.DstPort = binary.BigEndian.Uint16(l4[2:4])
		p.HasPorts = true
	case protoICMP, protoICMPv6:
		if (p.Proto == protoICMP) == p.IPv6 {
			return false // ICMP in IPv6 or ICMPv6 in IPv4
		}
		if len(l4) < 4 {
			return false
		}
		p.ICMPType = l4[0]
		req, rep := uint8(icmp4EchoRequest), uint8(icmp4EchoReply)
		if p.IPv6 {
			req, rep = icmp6EchoRequest, icmp6EchoReply
		}
		if isICMPError(p.ICMPType, p.IPv6) {
			if len(l4) < 8 {
				return false
			}
			p.ICMPError = true
			p.embedded = l4[8:]
		}
		if p.ICMPType == req || p.ICMPType == rep {
			if len(l4) < 8 {
				return false
			}
			id := binary.BigEndian.Uint16(l4[4:6])
			p.SrcPort, p.DstPort = id, id
			p.HasPorts = true
			p.ICMPEcho = p.ICMPType == req
			p.ICMPReply = p.ICMPType == rep
		}
	}
	return true
}

func isICMPError(typ uint8, v6 bool) bool {
	if v6 {
		return typ >= 1 && typ <= 4
	}
	return typ == 3 || typ == 11 || typ == 12
}

// parseEmbedded reads the packet quoted in an ICMP error: an IP header and
// at least the first 8 bytes of its transport header, which carry the ports
// (the quote may be truncated, so lengths are not checked against the
// header's).
func parseEmbedded(b []byte, v6 bool, p *Packet) bool {
	*p = Packet{}
	var l4 []byte
	if !v6 {
		if len(b) < 20 || b[0]>>4 != 4 {
			return false
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl+8 {
			return false
		}
		copy(p.Src[:12], v4Prefix[:])
		copy(p.Src[12:], b[12:16])
		copy(p.Dst[:12], v4Prefix[:])
		copy(p.Dst[12:], b[16:20])
		p.Proto = b[9]
		l4 = b[ihl:]
	} else {
		if len(b) < 48 || b[0]>>4 != 6 {
			return false
		}
		p.IPv6 = true
		copy(p.Src[:], b[8:24])
		copy(p.Dst[:], b[24:40])
		p.Proto = b[6]
		l4 = b[40:]
	}
	switch p.Proto {
	case protoTCP, protoUDP:
		p.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		p.DstPort = binary.BigEndian.Uint16(l4[2:4])
		p.HasPorts = true
	case protoICMP, protoICMPv6:
		req := uint8(icmp4EchoRequest)
		if p.IPv6 {
			req = icmp6EchoRequest
		}
		if l4[0] != req {
			return false
		}
		id := binary.BigEndian.Uint16(l4[4:6])
		p.SrcPort, p.DstPort = id, id
		p.HasPorts = true
	default:
		return false
	}
	return true
}
