package directory

import (
	"strings"
	"testing"
	"unicode/utf8"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

func TestSubstitute(t *testing.T) {
	cases := []struct {
		tmpl   string
		fields map[string]string
		want   string
	}{
		{DefaultUserFilter, map[string]string{"upn": "a@b", "email": "a@c"},
			"(&(objectClass=person)(|(userPrincipalName=a@b)(mail=a@c)))"},
		{DefaultUserFilter, map[string]string{"email": "a@c"},
			"(&(objectClass=person)(|(!(objectClass=*))(mail=a@c)))"},
		{DefaultUserFilter, map[string]string{"upn": "", "email": "*"},
			`(&(objectClass=person)(|(!(objectClass=*))(mail=\2a)))`},
		{DefaultUserFilter, map[string]string{"email": `x)(uid=*`},
			`(&(objectClass=person)(|(!(objectClass=*))(mail=x\29\28uid=\2a)))`},
		{"(cn={cn})", map[string]string{"cn": "Zoë \\ (x)"}, `(cn=Zo\c3\ab \5c \28x\29)`},
		{"(cn={cn})", map[string]string{"cn": "a\x00b"}, `(cn=a\00b)`},
		{"(cn={cn}-{serial})", map[string]string{"cn": "a", "serial": "1"}, `(cn=a-1)`},
		{"(cn={cn}-{serial})", map[string]string{"cn": "a"}, matchNothing},
		{"(&(a={id})(b={id}))", map[string]string{"id": "*"}, `(&(a=\2a)(b=\2a))`},
		{"(mail=*@{dns})", map[string]string{"dns": "x*"}, `(mail=*@x\2a)`}, // the admin's wildcard stays, the input's is escaped
		{"(objectClass=x{y)", nil, "(objectClass=x{y)"},
	}
	for _, tc := range cases {
		tm, err := parseTemplate(tc.tmpl)
		if err != nil {
			t.Errorf("%s: %v", tc.tmpl, err)
			continue
		}
		if got := tm.substitute(tc.fields); got != tc.want {
			t.Errorf("%s %q\n got %s\nwant %s", tc.tmpl, tc.fields, got, tc.want)
		}
	}
}

func TestTemplateErrors(t *testing.T) {
	for _, s := range []string{
		"(mail={nope})",
		"{email}",
		"(|{email})",
		"((mail={email})",
		"(mail={email}",
		"(&(mail={email})",
		"(mail={email}(x=y))",
		"",
	} {
		if _, err := parseTemplate(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// shape is a filter tree's structure: node tags and attribute names,
// without assertion values.
func shape(p *ber.Packet) string {
	var b strings.Builder
	var walk func(p *ber.Packet)
	walk = func(p *ber.Packet) {
		b.WriteString("(" + ldap.FilterMap[uint64(p.Tag)])
		switch p.Tag {
		case ldap.FilterAnd, ldap.FilterOr, ldap.FilterNot:
			for _, c := range p.Children {
				walk(c)
			}
		case ldap.FilterPresent:
			b.WriteString(" " + pstr(p))
		default:
			if len(p.Children) > 0 {
				b.WriteString(" " + pstr(p.Children[0]))
			}
		}
		b.WriteString(")")
	}
	walk(p)
	return b.String()
}

// FuzzTemplate: a substituted filter always compiles, keeps the template's
// shape (no wildcard, presence or extra item from input), and carries each
// value exactly.
func FuzzTemplate(f *testing.F) {
	f.Add("alice@example.com", "alice@corp.example.com")
	f.Add("*", "")
	f.Add("x)(mail=*", `\2a`)
	f.Add("Zoë", "\x00\xff")
	tm, err := parseTemplate(DefaultUserFilter)
	if err != nil {
		f.Fatal(err)
	}
	ref, err := ldap.CompileFilter(tm.substitute(map[string]string{"upn": "x", "email": "x"}))
	if err != nil {
		f.Fatal(err)
	}
	want := shape(ref)
	f.Fuzz(func(t *testing.T, email, upn string) {
		fields := map[string]string{"email": email, "upn": upn}
		s := tm.substitute(fields)
		p, err := ldap.CompileFilter(s)
		if err != nil {
			t.Fatalf("%q does not compile: %v", s, err)
		}
		if email == "" || upn == "" {
			if !strings.Contains(s, matchNothing) {
				t.Fatalf("empty field not replaced: %q", s)
			}
			return
		}
		if got := shape(p); got != want {
			t.Fatalf("shape %s, want %s (filter %q)", got, want, s)
		}
		or := p.Children[1].Children
		if v := pstr(or[0].Children[1]); v != upn {
			t.Fatalf("upn value %q, want %q", v, upn)
		}
		if v := pstr(or[1].Children[1]); v != email {
			t.Fatalf("email value %q, want %q", v, email)
		}
		if !utf8.ValidString(s) {
			t.Fatalf("filter not UTF-8: %q", s)
		}
	})
}
