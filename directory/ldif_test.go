package directory

import (
	"os"
	"strings"
	"testing"
)

func TestParseLDIF(t *testing.T) {
	in := "version: 1\r\n" +
		"# a comment\r\n" +
		"#  folded comment\r\n" +
		"  continues\r\n" +
		"\r\n" +
		"dn: uid=a,dc=x\r\n" +
		"cn: Long\r\n" +
		"  Name\r\n" +
		"cn;lang-en:: WsO2w6s=\r\n" +
		"description:: \r\n" +
		"mail:bare@x\r\n" +
		"\r\n\r\n" +
		"dn:: dWlkPWIsZGM9eA==\n" +
		"changetype: add\n" +
		"objectClass: top\n"
	got, err := parseLDIF([]byte(in))
	must(t, err)
	if len(got) != 2 {
		t.Fatalf("%d records", len(got))
	}
	a := got[0]
	if a.DN != "uid=a,dc=x" || len(a.Attrs) != 4 ||
		a.Attrs[0] != (ldifAttr{"cn", "Long Name"}) ||
		a.Attrs[1] != (ldifAttr{"cn;lang-en", "Zöë"}) ||
		a.Attrs[2] != (ldifAttr{"description", ""}) ||
		a.Attrs[3] != (ldifAttr{"mail", "bare@x"}) {
		t.Fatalf("record 1: %+v", a)
	}
	if got[1].DN != "uid=b,dc=x" || len(got[1].Attrs) != 1 || got[1].Line != 14 {
		t.Fatalf("record 2: %+v", got[1])
	}
}

func TestParseLDIFErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"cn: x\n", "line 1: record must start with dn:"},
		{" x\n", "line 1: continuation line without a line to continue"},
		{"dn: cn=a\ndn: cn=b\n", "line 2: second dn:"},
		{"dn: cn=a\ncn:: ***\n", "line 2: cn: bad base64"},
		{"dn: cn=a\njpegPhoto:< file:///etc/passwd\n", "URL values are not supported"},
		{"dn: cn=a\nchangetype: delete\n", "only content records"},
		{"dn: cn=a\nno colon\n", "expected attr: value"},
		{"dn: cn=a\nc n: x\n", "bad attribute name"},
		{"dn: cn=a\ncn: \xff\n", "not UTF-8"},
		{"dn: not a dn\n", "line 1: dn"},
		{"version: 2\n", "unsupported version"},
		{"dn: cn=a\ncontrol: 1.2.3\n", "controls are not supported"},
	} {
		_, err := parseLDIF([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestExampleLDIF(t *testing.T) {
	b, err := os.ReadFile(exampleLDIF)
	must(t, err)
	recs, err := parseLDIF(b)
	must(t, err)
	if len(recs) < 20 {
		t.Fatalf("%d records", len(recs))
	}
}

func FuzzLDIF(f *testing.F) {
	if b, err := os.ReadFile(exampleLDIF); err == nil {
		f.Add(b)
	}
	f.Add([]byte("dn: cn=a\ncn:: WsO2w6s=\n x\n# c\n\ndn: cn=b\n"))
	f.Add([]byte("version: 1\n\ndn:: \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := parseLDIF(data)
		if err != nil {
			return
		}
		for _, r := range recs {
			if r.DN != "" {
				if _, err := canonDN(r.DN); err != nil {
					t.Fatalf("accepted bad dn %q", r.DN)
				}
			}
			for _, a := range r.Attrs {
				if a.Name == "" || !validAttrDesc(a.Name) {
					t.Fatalf("bad attribute name %q", a.Name)
				}
			}
			// Building the in-memory entry never panics.
			if r.DN != "" {
				newMemEntry(r)
			}
		}
	})
}
