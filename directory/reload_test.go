package directory

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// inEngineering looks alice up through the cache and reports whether she
// is (through the backend group) in engineering.
func inEngineering(t *testing.T, d *Directory) bool {
	t.Helper()
	_, groups, err := d.Lookup(context.Background(), "user", aliceFields)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(groups, func(s string) bool { return sameDN(s, g("engineering")) })
}

// TestReloadInvalidatesLDAPCache: a group change on the LDAP server is
// seen by the first lookup after Reload, not cache_ttl later; the
// invalidated answers are still there for serve_stale during an outage.
func TestReloadInvalidatesLDAPCache(t *testing.T) {
	s := startSlapd(t)
	d := newDir(t, "ldap", s, func(c *Config) {
		c.CacheTTL = Duration{time.Hour}
		c.OnOutage = "serve_stale"
		c.StaleMaxAge = Duration{time.Hour}
		c.Timeout = Duration{time.Second}
	})
	if !inEngineering(t, d) {
		t.Fatal("alice not in engineering before the change")
	}
	a := s.admin()
	m := ldap.NewModifyRequest(g("backend"), nil)
	m.Replace("member", []string{dnFrank}) // a group needs a member
	must(t, a.Modify(m))
	a.Close()
	if !inEngineering(t, d) {
		t.Fatal("the cached answer was not used before the reload: the test proves nothing")
	}
	must(t, d.Reload())
	if inEngineering(t, d) {
		t.Fatal("after Reload, the lookup still says alice is in engineering (cached)")
	}
	// Invalidated, not forgotten: with the server down the answer fetched
	// after the reload is served stale.
	d.Invalidate()
	s.kill()
	if inEngineering(t, d) {
		t.Fatal("stale answer after Invalidate is the old one")
	}
	if st := d.Stats(); st.Stale != 1 {
		t.Fatalf("stats %+v: want 1 stale answer", st)
	}
}

// TestReloadRereadsFile: Reload re-reads the LDIF file at once (not at the
// next poll) and a cached answer does not outlive it.
func TestReloadRereadsFile(t *testing.T) {
	f := t.TempDir() + "/dir.ldif"
	orig := string(readFile(t, exampleLDIF))
	must(t, writeFile(f, orig))
	d := newDir(t, "file", nil, func(c *Config) {
		c.File = f
		c.CacheTTL = Duration{time.Hour}
		c.Reload = Duration{time.Hour}
	})
	if !inEngineering(t, d) {
		t.Fatal("alice not in engineering before the change")
	}
	edited := replaceOnce(t, orig, "cn: backend\nmember: uid=alice,ou=people,dc=example,dc=com\n", "cn: backend\n")
	must(t, writeFile(f, edited))
	if !inEngineering(t, d) {
		t.Fatal("the cached answer was not used before the reload: the test proves nothing")
	}
	must(t, d.Reload())
	if inEngineering(t, d) {
		t.Fatal("after Reload, alice is still in engineering")
	}
}

func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("%q not found", old)
	}
	return strings.Replace(s, old, new, 1)
}
