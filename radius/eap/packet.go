package eap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// EAP codes (RFC 3748 section 4).
const (
	CodeRequest  = 1
	CodeResponse = 2
	CodeSuccess  = 3
	CodeFailure  = 4
)

// EAP method types used here.
const (
	TypeIdentity = 1
	TypeNak      = 3
	TypeTLS      = 13
)

// EAP-TLS flags (RFC 5216 section 3.1).
const (
	FlagLength = 0x80 // L: TLS Message Length present
	FlagMore   = 0x40 // M: more fragments follow
	FlagStart  = 0x20 // S: EAP-TLS Start
)

// MaxMessage is the default cap on a reassembled TLS message (all fragments
// of one flight together).
const MaxMessage = 64 << 10

// Errors returned for malformed input. They never carry packet contents.
var (
	ErrShort     = errors.New("eap: packet too short")
	ErrLength    = errors.New("eap: bad length field")
	ErrTooLarge  = errors.New("eap: reassembled message too large")
	ErrFragments = errors.New("eap: inconsistent fragments")
)

// Packet is a parsed EAP packet. Data aliases the input and holds what
// follows the Type octet (Request/Response only).
type Packet struct {
	Code byte
	ID   byte
	Type byte // 0 for Success/Failure
	Data []byte
}

// Parse parses one EAP packet. Bytes after the EAP Length are ignored.
func Parse(b []byte) (Packet, error) {
	if len(b) < 4 {
		return Packet{}, ErrShort
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n < 4 || n > len(b) {
		return Packet{}, ErrLength
	}
	p := Packet{Code: b[0], ID: b[1]}
	switch p.Code {
	case CodeRequest, CodeResponse:
		if n < 5 {
			return Packet{}, ErrShort
		}
		p.Type = b[4]
		p.Data = b[5:n]
	case CodeSuccess, CodeFailure:
		if n != 4 {
			return Packet{}, ErrLength
		}
	default:
		return Packet{}, fmt.Errorf("eap: unknown code %d", p.Code)
	}
	return p, nil
}

// AppendSuccess appends an EAP-Success with identifier id to dst.
func AppendSuccess(dst []byte, id byte) []byte { return append(dst, CodeSuccess, id, 0, 4) }

// AppendFailure appends an EAP-Failure with identifier id to dst.
func AppendFailure(dst []byte, id byte) []byte { return append(dst, CodeFailure, id, 0, 4) }

// AppendIdentity appends an EAP-Response/Identity.
func AppendIdentity(dst []byte, id byte, identity string) []byte {
	n := 5 + len(identity)
	dst = append(dst, CodeResponse, id, byte(n>>8), byte(n), TypeIdentity)
	return append(dst, identity...)
}

// AppendNak appends an EAP-Response/Nak proposing the method want.
func AppendNak(dst []byte, id byte, want byte) []byte {
	return append(dst, CodeResponse, id, 0, 6, TypeNak, want)
}

// AppendTLS appends an EAP-TLS packet of the given code. When flags has
// FlagLength, total is written as the TLS Message Length.
func AppendTLS(dst []byte, code, id, flags byte, total int, frag []byte) []byte {
	n := 6 + len(frag)
	if flags&FlagLength != 0 {
		n += 4
	}
	dst = append(dst, code, id, byte(n>>8), byte(n), TypeTLS, flags)
	if flags&FlagLength != 0 {
		dst = binary.BigEndian.AppendUint32(dst, uint32(total))
	}
	return append(dst, frag...)
}

// TLSData splits the Data of an EAP-TLS packet into flags, the announced
// total length (when FlagLength is set) and the fragment.
func TLSData(data []byte) (flags byte, total int, frag []byte, err error) {
	if len(data) < 1 {
		return 0, 0, nil, ErrShort
	}
	flags = data[0]
	frag = data[1:]
	if flags&FlagLength != 0 {
		if len(frag) < 4 {
			return 0, 0, nil, ErrShort
		}
		total = int(binary.BigEndian.Uint32(frag))
		frag = frag[4:]
	}
	return flags, total, frag, nil
}

// reassembler collects the fragments of one TLS message.
type reassembler struct {
	buf    []byte
	total  int // announced length, -1 when not announced
	active bool
}

// add adds one fragment. It returns the whole message when the last fragment
// arrives, more=true while fragments are still expected.
func (r *reassembler) add(flags byte, total int, frag []byte, max int) (msg []byte, more bool, err error) {
	if !r.active {
		r.active = true
		r.buf = r.buf[:0]
		r.total = -1
		if flags&FlagLength != 0 {
			if total > max || total < 0 {
				return nil, false, ErrTooLarge
			}
			r.total = total
		} else if flags&FlagMore != 0 {
			// RFC 5216 requires L on the first of several fragments;
			// accept its absence but cap the size.
			r.total = -1
		}
	}
	if len(r.buf)+len(frag) > max {
		return nil, false, ErrTooLarge
	}
	if r.total >= 0 && len(r.buf)+len(frag) > r.total {
		return nil, false, ErrFragments
	}
	if flags&FlagMore != 0 && len(frag) == 0 {
		return nil, false, ErrFragments
	}
	r.buf = append(r.buf, frag...)
	if flags&FlagMore != 0 {
		return nil, true, nil
	}
	r.active = false
	if r.total >= 0 && len(r.buf) != r.total {
		return nil, false, ErrFragments
	}
	return r.buf, false, nil
}

// fragmenter hands out one outgoing TLS message in fragments.
type fragmenter struct {
	data []byte
	off  int
}

func (f *fragmenter) pending() bool { return f.off < len(f.data) }

// next appends the next fragment as an EAP-TLS packet of size at most
// maxPacket to dst.
func (f *fragmenter) next(dst []byte, code, id byte, maxPacket int) []byte {
	rest := len(f.data) - f.off
	var flags byte
	room := maxPacket - 6
	if f.off == 0 && rest > room {
		flags |= FlagLength
		room -= 4
	}
	n := rest
	if n > room {
		n = room
		flags |= FlagMore
	}
	dst = AppendTLS(dst, code, id, flags, len(f.data), f.data[f.off:f.off+n])
	f.off += n
	if f.off == len(f.data) {
		f.data, f.off = nil, 0
	}
	return dst
}
