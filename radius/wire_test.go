package radius

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	layeh "layeh.com/radius"

	"github.com/gatehouse/gatehouse/radius/radbench"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 5997 section 6: Status-Server with a Message-Authenticator, secret
// "xyzzy5461".
const rfc5997StatusServer = `0c da 00 26 8a 54 f4 68 6f b3 94 c5 28 66 e3 02
	18 5d 06 23 50 12 5a 66 5e 2e 1e 84 11 f3 e2 43 82 20 97 c8 4f a3`

func TestRFC5997MessageAuthenticator(t *testing.T) {
	secret := []byte("xyzzy5461")
	b := unhex(t, rfc5997StatusServer)
	p, err := parsePacket(b)
	if err != nil {
		t.Fatal(err)
	}
	if !p.verifyMA(newHMAC(secret), false, nil) {
		t.Fatal("RFC 5997 vector: Message-Authenticator does not verify")
	}
	if p.verifyMA(newHMAC([]byte("xyzzy5462")), false, nil) {
		t.Fatal("verifies with the wrong secret")
	}
	b[25] ^= 1 // flip a bit of the MAC
	if p.verifyMA(newHMAC(secret), false, nil) {
		t.Fatal("verifies a corrupted MAC")
	}
	b[25] ^= 1
	// Our answer: Access-Accept, MA first, checked independently.
	r := newReply(nil, codeAccessAccept, p.id(), p.auth())
	out, err := r.finish(newHMAC(secret), md5.New(), secret)
	if err != nil {
		t.Fatal(err)
	}
	if !layeh.IsAuthenticResponse(out, b, secret) {
		t.Error("Response Authenticator wrong")
	}
	if err := radbench.CheckReplyMA(out, b[4:20], secret); err != nil {
		t.Error(err)
	}
}

// RFC 2865 section 7.1: Access-Request and Access-Accept, secret
// "xyzzy5461".
func TestRFC2865ResponseAuthenticator(t *testing.T) {
	secret := []byte("xyzzy5461")
	req := unhex(t, `01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb
		98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d
		93 d4 13 ce 31 96 e4 3f 78 2a 0a ee 04 06 c0 a8
		01 10 05 06 00 00 00 03`)
	resp := unhex(t, `02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf
		9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00
		0e 06 c0 a8 01 03`)
	b := append([]byte(nil), resp...)
	copy(b[4:20], req[4:20])
	signResponse(md5.New(), b, secret)
	if !bytes.Equal(b, resp) {
		t.Errorf("Response Authenticator %x, want %x", b[4:20], resp[4:20])
	}
	p, err := parsePacket(req)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := p.attr(attrUserName); string(v) != "nemo" {
		t.Errorf("User-Name %q", v)
	}
	if port, _ := p.uint32Attr(attrNASPort); port != 3 {
		t.Errorf("NAS-Port %d", port)
	}
}

func TestParsePacket(t *testing.T) {
	ok := unhex(t, rfc5997StatusServer)
	tests := []struct {
		name string
		b    []byte
		err  bool
	}{
		{"rfc5997", ok, false},
		{"trailing bytes ignored", append(append([]byte(nil), ok...), 1, 2, 3), false},
		{"short", ok[:19], true},
		{"length beyond datagram", ok[:30], true},
		{"length below header", append([]byte{1, 1, 0, 19}, make([]byte, 16)...), true},
		{"attribute length 0", append([]byte{1, 1, 0, 22}, append(make([]byte, 16), 1, 0)...), true},
		{"attribute overruns", append([]byte{1, 1, 0, 22}, append(make([]byte, 16), 1, 9)...), true},
		{"MA wrong length", append([]byte{1, 1, 0, 24}, append(make([]byte, 16), 80, 4, 0, 0)...), true},
		{"two MA", func() []byte {
			b := append([]byte{1, 1, 0, 56}, make([]byte, 16)...)
			b = append(b, 80, 18)
			b = append(b, make([]byte, 16)...)
			b = append(b, 80, 18)
			return append(b, make([]byte, 16)...)
		}(), true},
	}
	for _, tc := range tests {
		_, err := parsePacket(tc.b)
		if (err != nil) != tc.err {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
}

func TestReplyAttributes(t *testing.T) {
	r := newReply(nil, codeAccessChallenge, 9, make([]byte, 16))
	eapMsg := bytes.Repeat([]byte{0xAB}, 600)
	r.addEAP(eapMsg)
	r.add(attrState, []byte("0123456789abcdef"))
	b, err := r.finish(newHMAC([]byte("s")), md5.New(), []byte("s"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := parsePacket(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.maAt != 22 {
		t.Errorf("Message-Authenticator at %d, want first (22)", p.maAt)
	}
	if got := p.appendAll(nil, attrEAPMessage); !bytes.Equal(got, eapMsg) {
		t.Errorf("EAP-Message reassembly: %d bytes", len(got))
	}
	r = newReply(nil, codeAccessAccept, 1, make([]byte, 16))
	r.add(attrClass, make([]byte, 254))
	if _, err := r.finish(newHMAC([]byte("s")), md5.New(), []byte("s")); err == nil {
		t.Error("accepted an attribute value of 254 bytes")
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
