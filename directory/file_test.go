package directory

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const miniLDIF = `dn: uid=alice,ou=people,dc=example,dc=com
objectClass: person
mail: alice@example.com

dn: cn=eng,ou=groups,dc=example,dc=com
objectClass: groupOfNames
member: uid=alice,ou=people,dc=example,dc=com
`

func TestFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dir.ldif")
	must(t, os.WriteFile(path, []byte(miniLDIF), 0o600))
	d, err := New(Config{Backend: "file", File: path, Reload: Duration{20 * time.Millisecond}}, testLogger(t))
	must(t, err)
	startRun(t, d)
	ctx := context.Background()
	_, groups, err := d.Lookup(ctx, "user", aliceFields)
	must(t, err)
	if len(groups) != 1 {
		t.Fatalf("groups %q", groups)
	}
	// A broken file keeps the previous contents.
	must(t, os.WriteFile(path, []byte("garbage\n"), 0o600))
	if err := d.Reload(); err == nil {
		t.Fatal("broken file accepted")
	}
	if dn, _, err := d.Lookup(ctx, "user", aliceFields); err != nil || dn == "" {
		t.Fatalf("after failed reload: %q %v", dn, err)
	}
	// A change is picked up by polling, and the cache is flushed.
	updated := strings.Replace(miniLDIF, "cn=eng,", "cn=ops,", 1) + `
dn: cn=all,ou=groups,dc=example,dc=com
objectClass: groupOfNames
member: cn=ops,ou=groups,dc=example,dc=com
`
	must(t, os.WriteFile(path, []byte(updated), 0o600))
	future := time.Now().Add(time.Second)
	must(t, os.Chtimes(path, future, future))
	eventually(t, 5*time.Second, func() error {
		_, groups, err := d.Lookup(ctx, "user", aliceFields)
		if err == nil && len(groups) != 2 {
			err = errorf("groups %q", groups)
		}
		return err
	})
}

func TestFileBaseDN(t *testing.T) {
	d, err := New(Config{Backend: "file", File: exampleLDIF, BaseDN: "ou=devices,dc=example,dc=com"}, nil)
	must(t, err)
	if dn, _, err := d.Lookup(context.Background(), "user", aliceFields); dn != "" || err != nil {
		t.Fatalf("alice outside base: %q %v", dn, err)
	}
	dn, groups, err := d.Lookup(context.Background(), "device", map[string]string{"serial": "TH-0001"})
	if dn == "" || err != nil || len(groups) != 0 {
		t.Fatalf("device under base: %q %q %v (groups outside base must not count)", dn, groups, err)
	}
}

// TestFileFilterOps covers in-memory evaluation beyond the default templates.
func TestFileFilterOps(t *testing.T) {
	cases := []struct {
		filter string
		fields map[string]string
		want   string
	}{
		{"(&(objectClass=inetOrgPerson)(uid={id}))", map[string]string{"id": "ALICE"}, dnAlice},
		{"(&(mail=*@example.com)(cn={cn}))", map[string]string{"cn": "bob example"}, dnBob},
		{"(&(cn=*ob Ex*)(sn=Exam*)(mail=*{email}))", map[string]string{"email": "b@example.com"}, dnBob},
		{"(&(uid={id})(!(mail=bob@example.com)))", map[string]string{"id": "bob"}, ""},
		{"(&(uid={id})(description=*))", map[string]string{"id": "alice"}, dnAlice},
		{"(&(uid={id})(description=*))", map[string]string{"id": "bob"}, ""},
		{"(entryDN={id})", map[string]string{"id": "UID=Carol,OU=people,DC=example,DC=com"}, dnCarol},
		{"(&(objectClass=groupOfNames)(member={id}))", map[string]string{"id": "cn=thermostat-0001,ou=devices,dc=example,dc=com"}, g("thermostats")},
		{"(cn:caseExactMatch:={cn})", map[string]string{"cn": "Alice Example"}, ""}, // extensible: false
		{"(&(objectClass=posixGroup)(gidNumber>={id}))", map[string]string{"id": "4999"}, g("posix-dev")},
		{"(&(objectClass=posixGroup)(gidNumber<={id}))", map[string]string{"id": "4999"}, ""},
	}
	for _, tc := range cases {
		d, err := New(Config{Backend: "file", File: exampleLDIF, UserFilter: tc.filter}, nil)
		must(t, err)
		dn, _, err := d.Lookup(context.Background(), "user", tc.fields)
		if err != nil || !sameDN(dn, tc.want) {
			t.Errorf("%s %q: %q %v, want %q", tc.filter, tc.fields, dn, err, tc.want)
		}
	}
}

func TestCanonDN(t *testing.T) {
	a, err := canonDN(`cn=R&D\2C Lab,ou=groups,dc=example,dc=com`)
	must(t, err)
	b, err := canonDN(`CN=R&D\, Lab, OU=Groups,DC=Example,DC=com`)
	must(t, err)
	c, err := canonDN(`cn=R&D,ou=groups,dc=example,dc=com`)
	must(t, err)
	if a != b || a == c {
		t.Fatalf("%q %q %q", a, b, c)
	}
	x, _ := canonDN(`cn=a+sn=b,dc=x`)
	y, _ := canonDN(`SN=B+CN=A,DC=X`)
	if x != y {
		t.Fatalf("multi-valued RDN: %q %q", x, y)
	}
	z1, _ := canonDN(`cn=Zo\C3\AB,dc=x`)
	z2, _ := canonDN(`cn=ZOË,dc=x`)
	if z1 != z2 {
		t.Fatalf("utf8: %q %q", z1, z2)
	}
	// '+' is not ',': one multi-valued RDN is not two RDNs.
	if m, two := canonOrRaw(`cn=a+ou=x,dc=y`), canonOrRaw(`cn=a,ou=x,dc=y`); m == two {
		t.Fatalf("multi-valued RDN equals two RDNs: %q", m)
	}
	// An escaped comma is part of a value, never an RDN boundary for base_dn.
	if underBase(canonOrRaw(`cn=a\,ou=x,dc=y`), canonOrRaw(`ou=x,dc=y`)) {
		t.Fatal(`cn=a\,ou=x,dc=y counted as under ou=x,dc=y`)
	}
	if !underBase(canonOrRaw(`uid=a,OU=X,dc=y`), canonOrRaw(`ou=x,dc=y`)) {
		t.Fatal("entry not under its base")
	}
}

// FuzzFileLookup: whatever the e-mail, the file backend finds at most the
// entry whose mail equals it (case-insensitively): input never acts as a
// wildcard or filter syntax.
func FuzzFileLookup(f *testing.F) {
	for _, s := range []string{"alice@example.com", "*", "star*@example.com", "st*", "x)(mail=*", `\2a`, "ZOE@example.com", "dup@example.com"} {
		f.Add(s)
	}
	d, err := New(Config{Backend: "file", File: exampleLDIF, CacheTTL: Duration{-1}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	fd := d.be.(*fileBackend).data.Load()
	f.Fuzz(func(t *testing.T, email string) {
		dn, _, err := d.Lookup(context.Background(), "user", map[string]string{"email": email})
		if err != nil {
			if email != "" && strings.EqualFold(email, "dup@example.com") {
				return
			}
			t.Fatalf("%q: %v", email, err)
		}
		if dn == "" {
			return
		}
		m := fd.byCanon[canonOrRaw(dn)]
		for _, v := range m.attrs["mail"] {
			if strings.EqualFold(v, email) {
				return
			}
		}
		t.Fatalf("%q found %q", email, dn)
	})
}
