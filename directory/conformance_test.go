package directory

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// The conformance suite runs the same fixture cases against the file
// backend and a real slapd.

// suiteUserFilter extends the default with cn so the UTF-8 case can look up
// by name.
const suiteUserFilter = "(&(objectClass=person)(|(userPrincipalName={upn})(mail={email})(cn={cn})))"

const (
	dnAlice  = "uid=alice,ou=people,dc=example,dc=com"
	dnBob    = "uid=bob,ou=people,dc=example,dc=com"
	dnCarol  = "uid=carol,ou=people,dc=example,dc=com"
	dnFrank  = "uid=frank,ou=people,dc=example,dc=com"
	dnZoe    = "cn=Zoë Ångström,ou=people,dc=example,dc=com"
	dnStar   = "uid=star,ou=people,dc=example,dc=com"
	dnThermo = "cn=thermostat-0001,ou=devices,dc=example,dc=com"
)

// g names a group of the fixture by its cn.
func g(cn string) string { return "cn=" + cn + ",ou=groups,dc=example,dc=com" }

var rnd = `R&D\2C Lab` // the group with an escaped comma

type lookupCase struct {
	name    string
	kind    string
	fields  map[string]string
	wantDN  string   // "" = no entry
	groups  []string // compared as a set of canonical DNs
	wantErr error
}

func conformanceCases() []lookupCase {
	aliceGroups := []string{g("backend"), g("engineering"), g("staff"), g("company"), g("loop-a"), g("loop-b")}
	return []lookupCase{
		{name: "upn nested three deep and cycle", kind: "user", fields: map[string]string{"id": "alice@corp.example.com", "upn": "alice@corp.example.com", "email": "alice@example.com"},
			wantDN: dnAlice, groups: aliceGroups},
		{name: "email only, other case", kind: "user", fields: map[string]string{"email": "ALICE@Example.COM"},
			wantDN: dnAlice, groups: aliceGroups},
		{name: "escaped comma group", kind: "user", fields: map[string]string{"email": "bob@example.com"},
			wantDN: dnBob, groups: []string{g("sales"), g(rnd)}},
		{name: "direct and nested", kind: "user", fields: map[string]string{"email": "carol@example.com"},
			wantDN: dnCarol, groups: []string{g("engineering"), g("staff"), g("company")}},
		{name: "no group", kind: "user", fields: map[string]string{"email": "frank@example.com"}, wantDN: dnFrank},
		{name: "utf8 by email", kind: "user", fields: map[string]string{"email": "zoe@example.com"},
			wantDN: dnZoe, groups: []string{g("sales")}},
		{name: "utf8 by cn folded", kind: "user", fields: map[string]string{"cn": "zoë ångström"},
			wantDN: dnZoe, groups: []string{g("sales")}},
		{name: "star literal", kind: "user", fields: map[string]string{"email": "star*@example.com"}, wantDN: dnStar},
		{name: "star is no wildcard", kind: "user", fields: map[string]string{"email": "star*"}},
		{name: "lone star", kind: "user", fields: map[string]string{"email": "*"}},
		{name: "suffix wildcard", kind: "user", fields: map[string]string{"email": "*@example.com"}},
		{name: "filter injection", kind: "user", fields: map[string]string{"email": "x)(mail=*", "upn": "*)(|(objectClass=*"}},
		{name: "ambiguous", kind: "user", fields: map[string]string{"email": "dup@example.com"}, wantErr: ErrAmbiguous},
		{name: "not found", kind: "user", fields: map[string]string{"email": "nobody@example.com"}},
		{name: "no fields", kind: "user", fields: map[string]string{}},
		{name: "empty field", kind: "user", fields: map[string]string{"email": "", "upn": ""}},
		{name: "device by serial", kind: "device", fields: map[string]string{"serial": "TH-0001", "cn": "thermostat-0001"},
			wantDN: dnThermo, groups: []string{g("thermostats")}},
		{name: "device unknown serial", kind: "device", fields: map[string]string{"serial": "TH-9999"}},
		{name: "user fields as device", kind: "device", fields: map[string]string{"email": "alice@example.com"}},
		{name: "user as device by serial", kind: "user", fields: map[string]string{"serial": "TH-0001"}},
	}
}

// newDir returns a Directory for backend "file" or "ldap" (against s).
func newDir(t *testing.T, backend string, s *slapd, mutate func(*Config)) *Directory {
	t.Helper()
	var cfg Config
	if backend == "file" {
		cfg = Config{Backend: "file", File: exampleLDIF}
	} else {
		cfg = s.config("")
	}
	cfg.UserFilter = suiteUserFilter
	if mutate != nil {
		mutate(&cfg)
	}
	d, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func runCases(t *testing.T, d *Directory, cases []lookupCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, nocache := range []bool{true, false, false} { // miss, then fill, then hit
				lookup := d.Lookup
				if nocache {
					lookup = d.LookupNoCache
				}
				dn, groups, err := lookup(context.Background(), tc.kind, tc.fields)
				checkLookup(t, tc, dn, groups, err)
			}
		})
	}
}

func checkLookup(t *testing.T, tc lookupCase, dn string, groups []string, err error) {
	t.Helper()
	if tc.wantErr != nil {
		if !errors.Is(err, tc.wantErr) {
			t.Fatalf("err = %v, want %v", err, tc.wantErr)
		}
		if IsUnavailable(err) {
			t.Fatalf("err %v must not be an outage", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("err = %v", err)
	}
	if !sameDN(dn, tc.wantDN) {
		t.Fatalf("dn = %q, want %q", dn, tc.wantDN)
	}
	if dn == "" && groups != nil {
		t.Fatalf("no entry but groups %q", groups)
	}
	if got, want := canonSet(t, groups), canonSet(t, tc.groups); !slices.Equal(got, want) {
		t.Fatalf("groups = %q\nwant     %q", got, want)
	}
}

func sameDN(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	return canonOrRaw(a) == canonOrRaw(b)
}

func canonSet(t *testing.T, dns []string) []string {
	t.Helper()
	out := make([]string, 0, len(dns))
	for _, dn := range dns {
		c, err := canonDN(dn)
		if err != nil {
			t.Fatalf("group %q: %v", dn, err)
		}
		if slices.Contains(out, c) {
			t.Fatalf("group %q returned twice", dn)
		}
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

func TestConformance(t *testing.T) {
	for _, backend := range []string{"file", "ldap"} {
		t.Run(backend, func(t *testing.T) {
			var s *slapd
			if backend == "ldap" {
				s = startSlapd(t)
			}
			t.Run("default", func(t *testing.T) {
				runCases(t, newDir(t, backend, s, nil), conformanceCases())
			})
			t.Run("depth1", func(t *testing.T) {
				d := newDir(t, backend, s, func(c *Config) { c.NestedDepth = 1 })
				runCases(t, d, []lookupCase{
					{name: "alice", kind: "user", fields: map[string]string{"email": "alice@example.com"},
						wantDN: dnAlice, groups: []string{g("backend"), g("engineering"), g("loop-a"), g("loop-b")}},
				})
			})
			t.Run("direct only", func(t *testing.T) {
				d := newDir(t, backend, s, func(c *Config) { c.NestedDepth = -1 })
				runCases(t, d, []lookupCase{
					{name: "alice", kind: "user", fields: map[string]string{"email": "alice@example.com"},
						wantDN: dnAlice, groups: []string{g("backend"), g("loop-a")}},
				})
			})
			modes := []struct {
				mode  string
				cases []lookupCase
			}{
				{"memberof", conformanceCases()},
				{"uniquemember", []lookupCase{
					{name: "alice", kind: "user", fields: map[string]string{"email": "alice@example.com"},
						wantDN: dnAlice, groups: []string{g("ops-unique"), g("it-unique")}},
					{name: "bob", kind: "user", fields: map[string]string{"email": "bob@example.com"}, wantDN: dnBob},
				}},
				{"memberuid", []lookupCase{
					{name: "alice", kind: "user", fields: map[string]string{"email": "alice@example.com"},
						wantDN: dnAlice, groups: []string{g("posix-dev")}},
					{name: "bob", kind: "user", fields: map[string]string{"email": "bob@example.com"},
						wantDN: dnBob, groups: []string{g("posix-dev")}},
					{name: "frank", kind: "user", fields: map[string]string{"email": "frank@example.com"}, wantDN: dnFrank},
					{name: "device has no uid", kind: "device", fields: map[string]string{"serial": "TH-0001"}, wantDN: dnThermo},
				}},
			}
			for _, m := range modes {
				t.Run(m.mode, func(t *testing.T) {
					runCases(t, newDir(t, backend, s, func(c *Config) { c.GroupMode = m.mode }), m.cases)
				})
			}
		})
	}
}
