package radius

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"testing"
)

// signedRequest builds an Access-Request with a User-Name, a Framed-MTU,
// two EAP-Message fragments and a valid Message-Authenticator.
func signedRequest(t *testing.T, secret []byte) []byte {
	t.Helper()
	b := []byte{codeAccessRequest, 42, 0, 0}
	for i := range 16 {
		b = append(b, byte(i*7+1))
	}
	b = append(b, attrUserName, 2+5)
	b = append(b, "alice"...)
	b = append(b, attrFramedMTU, 6, 0, 0, 0x05, 0xdc)
	eap := make([]byte, 300)
	b = append(b, attrEAPMessage, 2+253)
	b = append(b, eap[:253]...)
	b = append(b, attrEAPMessage, 2+47)
	b = append(b, eap[253:]...)
	ma := len(b) + 2
	b = append(b, attrMessageAuthenticator, maLen)
	b = append(b, make([]byte, 16)...)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	h := hmac.New(md5.New, secret)
	h.Write(b)
	copy(b[ma:], h.Sum(nil))
	return b
}

// signedAcct builds an Accounting-Request with a valid Request
// Authenticator (RFC 2866) and Message-Authenticator.
func signedAcct(t *testing.T, secret []byte) []byte {
	t.Helper()
	b := []byte{codeAccountingRequest, 7, 0, 0}
	b = append(b, make([]byte, 16)...)
	b = append(b, attrAcctStatusType, 6, 0, 0, 0, 1)
	b = append(b, attrAcctSessionID, 2+8)
	b = append(b, "sess-001"...)
	ma := len(b) + 2
	b = append(b, attrMessageAuthenticator, maLen)
	b = append(b, make([]byte, 16)...)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	h := hmac.New(md5.New, secret)
	h.Write(b) // authenticator and MA zero
	copy(b[ma:], h.Sum(nil))
	m := md5.New()
	m.Write(b)
	m.Write(secret)
	copy(b[4:20], m.Sum(nil))
	return b
}

// TestCodecAllocs asserts what the benchmarks report for the RADIUS codec:
// decoding a request, reading its attributes, verifying its
// Message-Authenticator and accounting authenticator, and encoding and
// signing a reply allocate nothing (given the reused hashes and buffers the
// server keeps per worker).
func TestCodecAllocs(t *testing.T) {
	secret := []byte("testing123")
	req := signedRequest(t, secret)
	acct := signedAcct(t, secret)
	h, m := newHMAC(secret), md5.New()
	scratch := make([]byte, 0, 16)
	eapBuf := make([]byte, 0, maxPacket)
	out := make([]byte, 0, maxPacket)
	eap := make([]byte, 600)

	p, err := parsePacket(req)
	if err != nil || !p.verifyMA(h, false, scratch) {
		t.Fatalf("request: %v, MA ok=%v", err, err == nil && p.verifyMA(h, false, scratch))
	}
	pa, err := parsePacket(acct)
	if err != nil || !pa.verifyMA(h, true, scratch) || !pa.verifyAcctAuth(m, secret, scratch) {
		t.Fatalf("accounting request: %v", err)
	}
	for _, tc := range []struct {
		name string
		run  func()
	}{
		{"decode", func() {
			p, err := parsePacket(req)
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := p.attr(attrUserName); !ok || string(v) != "alice" {
				t.Fatal("User-Name")
			}
			if mtu, ok := p.uint32Attr(attrFramedMTU); !ok || mtu != 1500 {
				t.Fatal("Framed-MTU")
			}
			if e := p.appendAll(eapBuf[:0], attrEAPMessage); len(e) != 300 {
				t.Fatal("EAP-Message")
			}
		}},
		{"verify Message-Authenticator", func() {
			if !p.verifyMA(h, false, scratch) {
				t.Fatal("MA")
			}
		}},
		{"verify accounting", func() {
			if !pa.verifyMA(h, true, scratch) || !pa.verifyAcctAuth(m, secret, scratch) {
				t.Fatal("accounting authenticator")
			}
		}},
		{"encode reply", func() {
			r := newReply(out, codeAccessChallenge, p.id(), p.auth())
			r.add(attrState, []byte("0123456789abcdef"))
			r.addString(attrReplyMessage, "hello")
			r.addUint32(attrSessionTimeout, 3600)
			r.addTaggedInt(attrTunnelType, 0, 13)
			r.addEAP(eap)
			r.addVSA(vendorMS, 99, []byte("vsa"))
			if _, err := r.finish(h, m, secret); err != nil {
				t.Fatal(err)
			}
		}},
		{"encode accounting response", func() {
			r := newReply(out, codeAccountingResponse, pa.id(), pa.auth())
			r.maZero = true
			if _, err := r.finish(h, m, secret); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		if n := testing.AllocsPerRun(50, tc.run); n != 0 {
			t.Errorf("%s: %v allocations, want 0", tc.name, n)
		}
	}
}
