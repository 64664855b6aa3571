package dn

import (
	"errors"
	"strings"
	"testing"
)

func TestCanonical(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// RFC 4514 section 4, the examples.
		{"rfc4514 simple", `UID=jsmith,DC=example,DC=net`, `uid=jsmith,dc=example,dc=net`},
		{"rfc4514 multi-valued", `OU=Sales+CN=J.  Smith,DC=example,DC=net`, `cn=j.  smith+ou=sales,dc=example,dc=net`},
		{"rfc4514 escaped quotes and comma", `CN=James \"Jim\" Smith\, III,DC=example,DC=net`, `cn=james \22jim\22 smith\2c iii,dc=example,dc=net`},
		{"rfc4514 hex escape CR", `CN=Before\0dAfter,DC=example,DC=net`, `cn=before\0dafter,dc=example,dc=net`},
		{"rfc4514 hex BER value", `1.3.6.1.4.1.1466.0=#04024869`, `1.3.6.1.4.1.1466.0=hi`},
		{"rfc4514 UTF-8 escapes", `CN=Lu\C4\8Di\C4\87`, `cn=lučić`},
		// Multi-valued RDNs: values sorted, '+' kept apart from ','.
		{"multi sorted", `ou=x+cn=a,dc=y`, `cn=a+ou=x,dc=y`},
		{"multi three", `uid=u+ou=x+cn=a`, `cn=a+ou=x+uid=u`},
		{"multi escaped comma", `cn=Sales\2C EMEA+ou=x,dc=example`, `cn=sales\2c emea+ou=x,dc=example`},
		{"two RDNs", `cn=Sales\, EMEA,ou=x,dc=example`, `cn=sales\2c emea,ou=x,dc=example`},
		// Escapes.
		{"escaped comma", `cn=R&D\, Lab`, `cn=r&d\2c lab`},
		{"hex comma", `cn=R&D\2C Lab`, `cn=r&d\2c lab`},
		{"hex comma lower", `cn=R&D\2c Lab`, `cn=r&d\2c lab`},
		{"escaped plus", `cn=a\+b`, `cn=a\2bb`},
		{"escaped backslash", `cn=a\\b`, `cn=a\5cb`},
		{"escaped leading sharp", `cn=\#1`, `cn=\231`},
		{"escaped specials", `cn=\<\>\;\=\"`, `cn=\3c\3e\3b\3d\22`},
		{"escaped non-special", `cn=\_x`, `cn=_x`},
		// Hex (BER) values.
		{"hex utf8string", `cn=#0c03414243`, `cn=abc`},
		{"hex printable", `CN=#1303414243,dc=x`, `cn=abc,dc=x`},
		{"hex binary", `cn=#30030101FF`, `cn=#30030101ff`},
		{"hex then space", `cn=#04024869 ,dc=x`, `cn=hi,dc=x`},
		// UTF-8, raw and escaped.
		{"utf8 raw", `cn=ZOË,dc=x`, `cn=zoë,dc=x`},
		{"utf8 escaped", `cn=Zo\C3\AB,dc=x`, `cn=zoë,dc=x`},
		// Spaces.
		{"spaces around separators", ` cn = a , ou = b + uid = c `, `cn=a,ou=b+uid=c`},
		{"inner spaces kept", `cn=a  b`, `cn=a  b`},
		{"escaped leading space", `cn=\ a`, `cn=\20a`},
		{"escaped trailing space", `cn=a\ `, `cn=a\20`},
		{"escaped space then spaces", `cn=a\   ,dc=x`, `cn=a\20,dc=x`},
		{"empty value", `cn=,dc=x`, `cn=,dc=x`},
		// Case.
		{"type case", `CN=a,Ou=b,dC=c`, `cn=a,ou=b,dc=c`},
		{"value case", `cn=Engineering`, `cn=engineering`},
		{"oid kept", `2.5.4.3=Alice`, `2.5.4.3=alice`},
		// RFC 2253 ';'.
		{"semicolon", `cn=a;dc=x`, `cn=a,dc=x`},
		{"empty DN", ``, ``},
		{"blank DN", `   `, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonical(tt.in)
			if err != nil {
				t.Fatalf("Canonical(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("Canonical(%q) = %q, want %q", tt.in, got, tt.want)
			}
			again, err := Canonical(got)
			if err != nil || again != got {
				t.Fatalf("canonical form %q is not stable: %q, %v", got, again, err)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	same := [][2]string{
		{`cn=R&D\2C Lab,ou=groups,dc=example,dc=com`, `CN=R&D\, Lab, OU=Groups,DC=example,DC=com`},
		{`cn=engineering,ou=groups,dc=example,dc=com`, `CN = Engineering , ou=groups,dc=EXAMPLE,dc=com`},
		{`cn=Zoë,dc=x`, `CN=ZO\C3\8B,DC=X`},
		{`cn=a+sn=b,dc=x`, `SN=B+CN=A,DC=X`},
		{`cn=a\+b,dc=x`, `cn=a\2Bb,dc=x`},
		{`cn=abc`, `cn=#0403616263`},
		{`cn=Sales\2C EMEA+ou=x,dc=example`, `ou=X+CN=sales\, emea, dc=Example`},
	}
	for _, p := range same {
		if !Equal(p[0], p[1]) {
			a, _ := Canonical(p[0])
			b, _ := Canonical(p[1])
			t.Errorf("%q and %q differ: %q != %q", p[0], p[1], a, b)
		}
	}
	differ := [][2]string{
		{`cn=a,dc=x`, `cn=b,dc=x`},
		{`cn=a\,b,dc=x`, `cn=a,cn=b,dc=x`},
		{`cn=a,ou=x`, `ou=a,ou=x`},
		{`cn=a+ou=x,dc=y`, `cn=a,ou=x,dc=y`},                                    // '+' is not ','
		{`cn=Sales\2C EMEA+ou=x,dc=example`, `cn=Sales\, EMEA,ou=x,dc=example`}, // the over-match
		{`cn=a\+ou=x,dc=y`, `cn=a+ou=x,dc=y`},                                   // escaped '+' is a value
		{`cn=\#04024869`, `cn=#04024869`},                                       // escaped '#' is text
		{`cn=#30030101ff`, `cn=#30030101fe`},                                    // binary values byte for byte
		{`cn=a\ `, `cn=a`},                                                      // escaped space is significant
		{`2.5.4.3=a`, `cn=a`},                                                   // OIDs are not mapped
		{`cn=a,dc=x`, `cn=a,dc=x,dc=y`},
	}
	for _, p := range differ {
		if Equal(p[0], p[1]) {
			t.Errorf("%q and %q compare equal", p[0], p[1])
		}
	}
	if Equal(`cn=a\`, `cn=a\`) {
		t.Error("malformed DNs compare equal")
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{
		"cn", "=x", "cn=a,", ",cn=a", "cn=a,,dc=x", "cn=a+", `cn=a\`, `cn=a\4`, `cn=a\4g`,
		"c n=a", "1=a", "1..2=a", "2.5.=a", "-cn=a", "cn=#", "cn=#0", "cn=#zz", "cn=#04 x",
		`cn=a"b`, "cn=a<b", "cn=a>b", "cn=a\x00b", "cn=\xff", `cn=\ff`, "cn=a,dc",
	} {
		_, err := Parse(bad)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("Parse(%q): err = %v, want *Error", bad, err)
		} else if !strings.HasPrefix(e.Error(), "dn: at byte ") {
			t.Errorf("Parse(%q): error text %q", bad, e.Error())
		}
	}
}

func TestFirst(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`cn=R&D\2C Lab,ou=groups`, "R&D, Lab"},
		{`CN=Engineering,ou=groups`, "Engineering"},
		{`cn=#0c03414243`, "ABC"},
		{`cn=a+ou=b,dc=x`, ""}, // multi-valued: no single name
		{``, ""},
	} {
		d, err := Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if d.First != tt.want {
			t.Errorf("Parse(%q).First = %q, want %q", tt.in, d.First, tt.want)
		}
	}
}

func TestIsUnder(t *testing.T) {
	tests := []struct {
		dn, base string
		want     bool
	}{
		{`uid=a,ou=People,dc=example,dc=com`, `dc=example,dc=com`, true},
		{`uid=a,ou=people,dc=example,dc=com`, `OU=People, DC=Example,DC=com`, true},
		{`dc=example,dc=com`, `dc=example,dc=com`, true},
		{`uid=a,dc=example,dc=com`, ``, true},
		{`uid=a,dc=other,dc=com`, `dc=example,dc=com`, false},
		{`dc=com`, `dc=example,dc=com`, false},
		// An escaped comma is part of a value, not an RDN boundary.
		{`cn=a\,ou=x,dc=y`, `ou=x,dc=y`, false},
		// A multi-valued RDN is not the RDN of one of its values.
		{`uid=a,cn=g+ou=x,dc=y`, `ou=x,dc=y`, false},
		{`uid=a,ou=x+cn=g,dc=y`, `cn=g+ou=x,dc=y`, true},
	}
	for _, tt := range tests {
		d, err1 := Parse(tt.dn)
		b, err2 := Parse(tt.base)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if got := d.IsUnder(b); got != tt.want {
			t.Errorf("IsUnder(%q, %q) = %v, want %v", tt.dn, tt.base, got, tt.want)
		}
		if got := IsUnderCanonical(d.String(), b.String()); got != tt.want {
			t.Errorf("IsUnderCanonical(%q, %q) = %v, want %v", d, b, got, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`cn=R&D\2C Lab,ou=groups`, `CN = a + uid=b;dc=x`, `cn=#0403616263`, `cn=#30030101ff`, `cn=\`, ``,
		`OU=Sales+CN=J.  Smith,DC=example,DC=net`, `CN=Lu\C4\8Di\C4\87`, `cn=\ a\ `, `1.2.3=x`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		// The canonical form is itself a DN with the same canonical form
		// and the same structure.
		c := d.String()
		d2, err := Parse(c)
		if err != nil {
			t.Fatalf("canonical %q of %q does not parse: %v", c, s, err)
		}
		if c2 := d2.String(); c2 != c {
			t.Fatalf("canonical form not stable: %q -> %q -> %q", s, c, c2)
		}
		if len(d2.RDNs) != len(d.RDNs) {
			t.Fatalf("%q: %d RDNs, canonical %q has %d", s, len(d.RDNs), c, len(d2.RDNs))
		}
		for i := range d.RDNs {
			if len(d.RDNs[i]) != len(d2.RDNs[i]) {
				t.Fatalf("%q: RDN %d has %d AVAs, canonical has %d", s, i, len(d.RDNs[i]), len(d2.RDNs[i]))
			}
		}
		if !d.IsUnder(d2) || !d2.IsUnder(d) {
			t.Fatalf("%q and its canonical form %q are not the same name", s, c)
		}
	})
}

func BenchmarkCanonical(b *testing.B) {
	const s = `CN=R&D\2C Lab+OU=Groups,DC=example,DC=com`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Canonical(s); err != nil {
			b.Fatal(err)
		}
	}
}
