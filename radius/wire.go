package radius

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
)

// RADIUS codes.
const (
	codeAccessRequest      = 1
	codeAccessAccept       = 2
	codeAccessReject       = 3
	codeAccountingRequest  = 4
	codeAccountingResponse = 5
	codeAccessChallenge    = 11
	codeStatusServer       = 12
)

// Attribute types.
const (
	attrUserName             = 1
	attrNASIPAddress         = 4
	attrNASPort              = 5
	attrFramedIPAddress      = 8
	attrFilterID             = 11
	attrFramedMTU            = 12
	attrReplyMessage         = 18
	attrState                = 24
	attrClass                = 25
	attrVendorSpecific       = 26
	attrSessionTimeout       = 27
	attrCalledStationID      = 30
	attrCallingStationID     = 31
	attrNASIdentifier        = 32
	attrProxyState           = 33
	attrAcctStatusType       = 40
	attrAcctInputOctets      = 42
	attrAcctOutputOctets     = 43
	attrAcctSessionID        = 44
	attrAcctSessionTime      = 46
	attrAcctInputPackets     = 47
	attrAcctOutputPackets    = 48
	attrAcctTerminateCause   = 49
	attrAcctInputGigawords   = 52
	attrAcctOutputGigawords  = 53
	attrTunnelType           = 64
	attrTunnelMediumType     = 65
	attrEAPMessage           = 79
	attrMessageAuthenticator = 80
	attrTunnelPrivateGroupID = 81
	attrFramedIPv6Address    = 168
)

const (
	maxPacket   = 4096
	vendorMS    = 311
	msMPPESend  = 16
	msMPPERecv  = 17
	maLen       = 18 // Message-Authenticator attribute, header included
	headerLen   = 20
	maxAttrData = 253
)

var (
	errShort     = errors.New("radius: short packet")
	errLength    = errors.New("radius: bad length")
	errAttr      = errors.New("radius: malformed attribute")
	errTwoMA     = errors.New("radius: more than one Message-Authenticator")
	errMALength  = errors.New("radius: Message-Authenticator of wrong length")
	errTooLarge  = errors.New("radius: reply too large")
	errAttrValue = errors.New("radius: attribute value too long")
)

// zero16 is sixteen zero octets, read only.
var zero16 [16]byte

// packet is a validated view of a datagram: the header fits, the Length
// field is honoured (trailing bytes dropped), every attribute is well formed
// and at most one Message-Authenticator is present.
type packet struct {
	b    []byte
	maAt int // offset of the Message-Authenticator value, -1 if absent
}

func parsePacket(b []byte) (packet, error) {
	if len(b) < headerLen {
		return packet{}, errShort
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n < headerLen || n > maxPacket || n > len(b) {
		return packet{}, errLength
	}
	p := packet{b: b[:n], maAt: -1}
	for i := headerLen; i < n; {
		if i+2 > n {
			return packet{}, errAttr
		}
		l := int(p.b[i+1])
		if l < 2 || i+l > n {
			return packet{}, errAttr
		}
		if p.b[i] == attrMessageAuthenticator {
			if p.maAt >= 0 {
				return packet{}, errTwoMA
			}
			if l != maLen {
				return packet{}, errMALength
			}
			p.maAt = i + 2
		}
		i += l
	}
	return p, nil
}

func (p packet) code() byte    { return p.b[0] }
func (p packet) id() byte      { return p.b[1] }
func (p packet) auth() []byte  { return p.b[4:20] }
func (p packet) attrs() []byte { return p.b[headerLen:] }

// attr returns the value of the first attribute of type t.
func (p packet) attr(t byte) ([]byte, bool) {
	a := p.attrs()
	for len(a) >= 2 {
		l := int(a[1])
		if a[0] == t {
			return a[2:l], true
		}
		a = a[l:]
	}
	return nil, false
}

// appendAll appends the concatenated values of every attribute of type t.
func (p packet) appendAll(dst []byte, t byte) []byte {
	a := p.attrs()
	for len(a) >= 2 {
		l := int(a[1])
		if a[0] == t {
			dst = append(dst, a[2:l]...)
		}
		a = a[l:]
	}
	return dst
}

func (p packet) uint32Attr(t byte) (uint32, bool) {
	v, ok := p.attr(t)
	if !ok || len(v) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

// verifyMA checks the Message-Authenticator (RFC 3579 section 3.2): an
// HMAC-MD5 keyed with the secret over the packet with the MA value zeroed.
// zeroAuth is true for Accounting-Request, whose authenticator is computed
// over a zero field. h is an HMAC-MD5 keyed with the secret; scratch (16
// bytes of capacity, may be nil) receives the computed MAC.
func (p packet) verifyMA(h hash.Hash, zeroAuth bool, scratch []byte) bool {
	if p.maAt < 0 {
		return false
	}
	zero := zero16[:]
	h.Reset()
	if zeroAuth {
		h.Write(p.b[:4])
		h.Write(zero)
		h.Write(p.b[headerLen:p.maAt])
	} else {
		h.Write(p.b[:p.maAt])
	}
	h.Write(zero)
	h.Write(p.b[p.maAt+16:])
	return hmac.Equal(h.Sum(scratch[:0]), p.b[p.maAt:p.maAt+16])
}

// verifyAcctAuth checks an Accounting-Request's Request Authenticator
// (RFC 2866 section 3): MD5(Code+ID+Length+16 zero octets+Attributes+Secret).
func (p packet) verifyAcctAuth(m hash.Hash, secret, scratch []byte) bool {
	m.Reset()
	m.Write(p.b[:4])
	m.Write(zero16[:])
	m.Write(p.b[headerLen:])
	m.Write(secret)
	return subtle.ConstantTimeCompare(m.Sum(scratch[:0]), p.auth()) == 1
}

// reply builds a response packet in place. The Message-Authenticator is
// always the first attribute.
type reply struct {
	b      []byte
	err    error
	maZero bool // compute the Message-Authenticator over a zero authenticator
}

func newReply(buf []byte, code, id byte, reqAuth []byte) reply {
	b := append(buf[:0], code, id, 0, 0)
	b = append(b, reqAuth[:16]...)
	b = append(b, attrMessageAuthenticator, maLen)
	b = append(b, make([]byte, 16)...)
	return reply{b: b}
}

func (r *reply) add(t byte, v []byte) {
	if len(v) > maxAttrData {
		r.err = errAttrValue
		return
	}
	r.b = append(r.b, t, byte(2+len(v)))
	r.b = append(r.b, v...)
}

func (r *reply) addString(t byte, s string) {
	if len(s) > maxAttrData {
		r.err = errAttrValue
		return
	}
	r.b = append(r.b, t, byte(2+len(s)))
	r.b = append(r.b, s...)
}

func (r *reply) addUint32(t byte, v uint32) {
	r.b = append(r.b, t, 6)
	r.b = binary.BigEndian.AppendUint32(r.b, v)
}

// addTagged adds a tagged integer (RFC 2868: tag octet + 3-octet value).
func (r *reply) addTaggedInt(t, tag byte, v uint32) {
	r.b = append(r.b, t, 6, tag, byte(v>>16), byte(v>>8), byte(v))
}

// addEAP splits an EAP packet over EAP-Message attributes.
func (r *reply) addEAP(msg []byte) {
	for len(msg) > 0 {
		n := min(len(msg), maxAttrData)
		r.add(attrEAPMessage, msg[:n])
		msg = msg[n:]
	}
}

// addVSA adds a Vendor-Specific attribute with one sub-attribute.
func (r *reply) addVSA(vendor uint32, vt byte, v []byte) {
	if len(v) > maxAttrData-6 {
		r.err = errAttrValue
		return
	}
	r.b = append(r.b, attrVendorSpecific, byte(8+len(v)))
	r.b = binary.BigEndian.AppendUint32(r.b, vendor)
	r.b = append(r.b, vt, byte(2+len(v)))
	r.b = append(r.b, v...)
}

// finish sets the length, the Message-Authenticator (computed with the
// Request Authenticator in the header, or zeroes when maZero is set)
// and the Response Authenticator.
// h is an HMAC-MD5 keyed with the secret, m a plain MD5.
func (r *reply) finish(h, m hash.Hash, secret []byte) ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) > maxPacket {
		return nil, errTooLarge
	}
	b := r.b
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	h.Reset()
	if r.maZero {
		// An Accounting-Response to an Accounting-Request: computed
		// over a zeroed authenticator field, as FreeRADIUS does (an
		// answer to Status-Server uses the Request Authenticator).
		h.Write(b[:4])
		h.Write(zero16[:])
		h.Write(b[20:])
	} else {
		h.Write(b)
	}
	h.Sum(b[22:22:38])
	signResponse(m, b, secret)
	return b, nil
}

// signResponse replaces the Request Authenticator in b's header with the
// Response Authenticator (RFC 2865 section 3): MD5(Code+ID+Length+Request
// Authenticator+Attributes+Secret).
func signResponse(m hash.Hash, b, secret []byte) {
	m.Reset()
	m.Write(b)
	m.Write(secret)
	m.Sum(b[4:4:20])
}

// newHMAC returns an HMAC-MD5 keyed with secret.
func newHMAC(secret []byte) hash.Hash { return hmac.New(md5.New, secret) }

// hasAttr reports whether p carries an attribute of type t.
func (p packet) hasAttr(t byte) bool {
	_, ok := p.attr(t)
	return ok
}

// echoProxyState returns the finished reply b with every Proxy-State
// attribute of the request req appended, in order (RFC 2865 section 5.33:
// a server MUST copy them unmodified into its reply), signed again. It
// returns b itself when the request carries none. b must have been built by
// newReply (Message-Authenticator first). h is an HMAC-MD5 keyed with
// secret, m a plain MD5.
func echoProxyState(b []byte, req packet, h, m hash.Hash, secret []byte) ([]byte, error) {
	if !req.hasAttr(attrProxyState) {
		return b, nil
	}
	if len(b) < headerLen+maLen || b[headerLen] != attrMessageAuthenticator {
		return nil, errors.New("radius: reply without leading Message-Authenticator")
	}
	n := 0
	for a := req.attrs(); len(a) >= 2; a = a[a[1]:] {
		if a[0] == attrProxyState {
			n += int(a[1])
		}
	}
	out := make([]byte, len(b), len(b)+n)
	copy(out, b)
	copy(out[4:20], req.auth())
	clear(out[22:38])
	for a := req.attrs(); len(a) >= 2; a = a[a[1]:] {
		if a[0] == attrProxyState {
			out = append(out, a[:a[1]]...)
		}
	}
	// An Accounting-Response to an Accounting-Request has its
	// Message-Authenticator computed over a zeroed authenticator.
	r := reply{b: out, maZero: b[0] == codeAccountingResponse && req.code() == codeAccountingRequest}
	return r.finish(h, m, secret)
}
