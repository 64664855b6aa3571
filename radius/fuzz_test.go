package radius

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"testing"

	layeh "layeh.com/radius"

	"github.com/gatehouse/gatehouse/radius/eap"
	"github.com/gatehouse/gatehouse/radius/radbench"
)

// FuzzDatagram: any datagram from a known client is handled without panic.
func FuzzDatagram(f *testing.F) {
	ip := newInproc(f, nil)
	f.Add(accessRequest(f, 1, eap.AppendIdentity(nil, 1, "x"), nil))
	f.Add(unhex(f, rfc5997StatusServer))
	st, _ := radbench.EncodeRequest(layeh.New(layeh.CodeStatusServer, []byte(testSecret)))
	f.Add(st)
	f.Add([]byte{4, 1, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxPacket {
			b = b[:maxPacket]
		}
		ip.do(b)
	})
}

// FuzzSignedAccessRequest fuzzes the attributes of an Access-Request that
// carries a valid Message-Authenticator, so the fuzzer reaches the EAP
// layer: State lookup, EAP parsing, EAP-TLS reassembly.
func FuzzSignedAccessRequest(f *testing.F) {
	ip := newInproc(f, nil)
	seed := func(msg []byte, state []byte) []byte {
		var a []byte
		for m := msg; len(m) > 0; m = m[min(len(m), 253):] {
			n := min(len(m), 253)
			a = append(a, attrEAPMessage, byte(2+n))
			a = append(a, m[:n]...)
		}
		if state != nil {
			a = append(a, attrState, byte(2+len(state)))
			a = append(a, state...)
		}
		return a
	}
	f.Add(seed(eap.AppendIdentity(nil, 1, "x"), nil))
	f.Add(seed(eap.AppendTLS(nil, eap.CodeResponse, 2, eap.FlagLength|eap.FlagMore, 3000, make([]byte, 400)), make([]byte, 16)))
	f.Add(seed(eap.AppendNak(nil, 2, 25), make([]byte, 16)))
	f.Fuzz(func(t *testing.T, attrs []byte) {
		if len(attrs) > maxPacket-20-maLen {
			return
		}
		b := make([]byte, 20, 20+maLen+len(attrs))
		b[0] = codeAccessRequest
		if len(attrs) > 0 {
			b[1] = attrs[0]
		}
		b = append(b, attrMessageAuthenticator, maLen)
		b = append(b, make([]byte, 16)...)
		b = append(b, attrs...)
		binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
		h := hmac.New(md5.New, []byte(testSecret))
		h.Write(b)
		copy(b[22:38], h.Sum(nil))
		ip.do(b)
		// Start a conversation, then feed the same attributes into it.
		r := ip.do(accessRequest(t, 7, eap.AppendIdentity(nil, 1, "x"), nil))
		if r == nil || len(r) < 20 {
			return
		}
		p, err := parsePacket(r)
		if err != nil {
			t.Fatal(err)
		}
		state, ok := p.attr(attrState)
		if !ok {
			return
		}
		ip.do(accessRequest(t, 8, attrsEAP(attrs), state))
	})
}

// attrsEAP uses fuzz bytes as an EAP message for an existing conversation,
// fixing the header so it reaches the EAP-TLS layer often.
func attrsEAP(b []byte) []byte {
	if len(b) > 3000 {
		b = b[:3000]
	}
	m := append([]byte{eap.CodeResponse, 2, 0, 0, eap.TypeTLS}, b...)
	binary.BigEndian.PutUint16(m[2:4], uint16(len(m)))
	return m
}
