package policy

import "testing"

func TestParseDN(t *testing.T) {
	same := [][2]string{
		{`cn=R&D\2C Lab,ou=groups,dc=example,dc=com`, `CN=R&D\, Lab, OU=Groups,DC=example,DC=com`},
		{`cn=engineering,ou=groups,dc=example,dc=com`, `CN = Engineering , ou=groups,dc=EXAMPLE,dc=com`},
		{`cn=Zoë,dc=x`, `CN=ZOË,DC=X`},
		{`cn=a\+b,dc=x`, `cn=a\2bb,dc=x`[:0] + `cn=a\2Bb,dc=x`},
	}
	for _, p := range same {
		a, _, err := parseDN(p[0])
		if err != nil {
			t.Fatalf("parseDN(%q): %v", p[0], err)
		}
		b, _, err := parseDN(p[1])
		if err != nil {
			t.Fatalf("parseDN(%q): %v", p[1], err)
		}
		if a != b {
			t.Errorf("%q and %q: keys %q != %q", p[0], p[1], a, b)
		}
	}
	differ := [][2]string{
		{`cn=a,dc=x`, `cn=b,dc=x`},
		{`cn=a\,b,dc=x`, `cn=a,cn=b,dc=x`},
		{`cn=a,ou=x`, `ou=a,ou=x`},
	}
	for _, p := range differ {
		a, _, _ := parseDN(p[0])
		b, _, _ := parseDN(p[1])
		if a == b {
			t.Errorf("%q and %q: same key %q", p[0], p[1], a)
		}
	}
	_, first, _ := parseDN(`cn=R&D\2C Lab,ou=groups`)
	if first != "R&D, Lab" {
		t.Errorf("first RDN value = %q", first)
	}
	for _, bad := range []string{"", "cn", "=x", `cn=a\`, `cn=a\4`} {
		if _, _, err := parseDN(bad); err == nil {
			t.Errorf("parseDN(%q): no error", bad)
		}
	}
}

func FuzzParseDN(f *testing.F) {
	for _, s := range []string{`cn=R&D\2C Lab,ou=groups`, `CN = a + uid=b;dc=x`, `cn=#0403616263`, `cn=\`, ``} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, _, err := parseDN(s)
		if err != nil {
			return
		}
		// A key is itself a DN with the same key.
		key2, _, err := parseDN(string(key))
		if err != nil {
			t.Fatalf("key %q of %q does not parse: %v", key, s, err)
		}
		if key2 != key {
			t.Fatalf("key not stable: %q -> %q -> %q", s, key, key2)
		}
	})
}
