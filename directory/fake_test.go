package directory

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// fakeLDAP answers searches from a table of filter → entry DNs and records
// the filters it was asked, standing in for a server in unit tests (for
// what slapd cannot do, such as AD's in-chain matching rule).
type fakeLDAP struct {
	answers map[string][]string
	asked   []string
}

func (f *fakeLDAP) search(ctx context.Context, req *ldap.SearchRequest, paged bool) ([]*ldap.Entry, error) {
	f.asked = append(f.asked, req.Filter)
	var out []*ldap.Entry
	for _, dn := range f.answers[req.Filter] {
		out = append(out, ldap.NewEntry(dn, map[string][]string{"uid": {"alice"}}))
	}
	return out, nil
}

func fakeLDAPDir(t *testing.T, mode string, f *fakeLDAP) *Directory {
	t.Helper()
	d, err := New(Config{
		Backend: "ldap", BaseDN: "dc=example,dc=com", GroupMode: mode,
		UserFilter: "(mail={email})",
		LDAP:       LDAPConfig{URLs: []string{"ldaps://127.0.0.1:1"}},
	}, nil)
	must(t, err)
	d.be.(*ldapBackend).searchFn = f.search
	return d
}

func TestADTransitiveFilter(t *testing.T) {
	user := `cn=R\2C Alice (admin),ou=people,dc=example,dc=com`
	inChain := `(member:1.2.840.113556.1.4.1941:=cn=R\5c2C Alice \28admin\29,ou=people,dc=example,dc=com)`
	f := &fakeLDAP{answers: map[string][]string{
		"(mail=alice@example.com)": {user},
		inChain:                    {g("backend"), g("engineering"), "CN=Backend,OU=Groups,DC=example,DC=com", g("staff")},
	}}
	d := fakeLDAPDir(t, "ad_transitive", f)
	dn, groups, err := d.LookupNoCache(context.Background(), "user", aliceFields)
	must(t, err)
	if dn != user {
		t.Fatalf("dn %q", dn)
	}
	if strings.Join(groups, ";") != g("backend")+";"+g("engineering")+";"+g("staff") {
		t.Fatalf("groups %q (duplicates must go, server spelling kept)", groups)
	}
	if len(f.asked) != 2 || f.asked[1] != inChain {
		t.Fatalf("asked %q", f.asked)
	}
	if _, err := ldap.CompileFilter(f.asked[1]); err != nil {
		t.Fatal(err)
	}
}

// TestNestedBatching: a wide level is asked in batches of groupBatch DNs
// per query, not one query per group, and cycles end.
func TestNestedBatching(t *testing.T) {
	const n = 70
	user := "uid=alice,ou=people,dc=example,dc=com"
	f := &fakeLDAP{answers: map[string][]string{
		"(mail=alice@example.com)": {user},
	}}
	var level1 []string
	for i := range n {
		level1 = append(level1, fmt.Sprintf("cn=g%d,ou=groups,dc=example,dc=com", i))
	}
	f.answers["(member="+user+")"] = level1
	// Every level-1 batch finds the parent, which contains alice again (a cycle).
	d := fakeLDAPDir(t, "member", f)
	fb := d.be.(*ldapBackend)
	fb.searchFn = func(ctx context.Context, req *ldap.SearchRequest, paged bool) ([]*ldap.Entry, error) {
		if strings.HasPrefix(req.Filter, "(|(member=cn=g") {
			f.asked = append(f.asked, req.Filter)
			return []*ldap.Entry{ldap.NewEntry("cn=parent,ou=groups,dc=example,dc=com", nil)}, nil
		}
		if req.Filter == "(member=cn=parent,ou=groups,dc=example,dc=com)" {
			f.asked = append(f.asked, req.Filter)
			return []*ldap.Entry{ldap.NewEntry(g("g0"), nil), ldap.NewEntry(user, nil)}, nil
		}
		return f.search(ctx, req, paged)
	}
	_, groups, err := d.LookupNoCache(context.Background(), "user", aliceFields)
	must(t, err)
	if len(groups) != n+1 {
		t.Fatalf("%d groups", len(groups))
	}
	// entry + direct + ceil(70/32)=3 batches + parent level + nothing new
	if len(f.asked) != 6 {
		t.Fatalf("%d queries: %q", len(f.asked), f.asked)
	}
}

func TestMemberOfMode(t *testing.T) {
	user := "uid=alice,ou=people,dc=example,dc=com"
	f := &fakeLDAP{answers: map[string][]string{"(mail=alice@example.com)": {user}}}
	d := fakeLDAPDir(t, "memberof", f)
	d.be.(*ldapBackend).searchFn = func(ctx context.Context, req *ldap.SearchRequest, paged bool) ([]*ldap.Entry, error) {
		f.asked = append(f.asked, req.Filter)
		switch req.Filter {
		case "(mail=alice@example.com)":
			if len(req.Attributes) != 1 || req.Attributes[0] != "memberOf" {
				t.Errorf("attributes %q", req.Attributes)
			}
			return []*ldap.Entry{ldap.NewEntry(user, map[string][]string{"memberOf": {g("a"), g("b")}})}, nil
		case "(|(member=" + g("a") + ")(member=" + g("b") + "))":
			return []*ldap.Entry{ldap.NewEntry(g("top"), nil)}, nil
		}
		return nil, nil
	}
	_, groups, err := d.LookupNoCache(context.Background(), "user", aliceFields)
	must(t, err)
	if strings.Join(groups, ";") != g("a")+";"+g("b")+";"+g("top") || len(f.asked) != 3 {
		t.Fatalf("groups %q asked %q", groups, f.asked)
	}
}
