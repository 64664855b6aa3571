package policy

import (
	"context"
	"strings"
	"testing"
)

// TestRuleDNMultiValuedRDN: a group named by DN in a rule matches only the
// group with the same RDNs — '+' (one multi-valued RDN) is not ',' (two
// RDNs), and the order of the values inside an RDN does not matter.
func TestRuleDNMultiValuedRDN(t *testing.T) {
	const member = `cn=Sales\2C EMEA+ou=x,dc=example,dc=com` // one RDN with two values
	dir := &fakeDir{entries: map[string][]string{"user:bob@example.com": {member}}}
	bob := loadChain(t, "bob.pem")

	// An allow rule naming two RDNs must not admit a member of the group
	// whose first RDN holds both values.
	cfg := testConfig()
	cfg.Rules = []RuleConfig{{Name: "sales-emea", Groups: []string{`cn=Sales\, EMEA,ou=x,dc=example,dc=com`}, WiFi: &WiFiConfig{VLAN: "20"}}}
	if d := NewAuthorizer(mustCompile(t, cfg), dir, nil).Authorize(context.Background(), bob); d.Allowed || d.Code != CodeNoRule {
		t.Errorf("allow rule over-matched: %v rule %q (%s)", d.Code, d.Rule, d.Reason)
	}

	// A deny rule naming the same multi-valued RDN in another order fires.
	cfg.Rules = []RuleConfig{
		{Name: "deny-emea", Groups: []string{`OU=X+CN=sales\, emea, DC=Example, DC=com`}, Deny: true},
		{Name: "everyone", Everyone: true, WiFi: &WiFiConfig{VLAN: "20"}},
	}
	if d := NewAuthorizer(mustCompile(t, cfg), dir, nil).Authorize(context.Background(), bob); d.Code != CodeRuleDenies || d.Rule != "deny-emea" {
		t.Errorf("deny rule did not fire: %v rule %q (%s)", d.Code, d.Rule, d.Reason)
	}
}

// TestEveryoneRule: a rule without group conditions must say everyone =
// true, and then matches every directory entry, whatever its groups.
func TestEveryoneRule(t *testing.T) {
	dir := &fakeDir{entries: map[string][]string{"user:frank@example.com": nil, "user:bob@example.com": {"cn=sales,ou=groups,dc=example,dc=com"}}}
	cfg := testConfig()
	cfg.Rules = []RuleConfig{{Name: "all-staff", Kind: "user", Everyone: true, WiFi: &WiFiConfig{VLAN: "99"}}}
	a := NewAuthorizer(mustCompile(t, cfg), dir, nil)
	for _, f := range []string{"frank.pem", "bob.pem"} {
		if d := a.Authorize(context.Background(), loadChain(t, f)); !d.Allowed || d.Rule != "all-staff" {
			t.Errorf("%s: %v rule %q (%s)", f, d.Code, d.Rule, d.Reason)
		}
	}
	// Identity conditions alone are conditions enough.
	cfg.Rules = []RuleConfig{{Name: "by-domain", Identity: map[string][]string{"email": {"*@example.com"}}, WiFi: &WiFiConfig{VLAN: "5"}}}
	mustCompile(t, cfg)
}

// TestMalformedGroupDNDenies: a group DN that does not parse denies
// (directory_error) rather than being skipped, which could keep a deny rule
// naming that group from firing.
func TestMalformedGroupDNDenies(t *testing.T) {
	dir := &fakeDir{entries: map[string][]string{"user:bob@example.com": {`cn=blocked,ou="groups",dc=example,dc=com`, "cn=sales,ou=groups,dc=example,dc=com"}}}
	cfg := testConfig()
	d := NewAuthorizer(mustCompile(t, cfg), dir, nil).Authorize(context.Background(), loadChain(t, "bob.pem"))
	if d.Allowed || d.Code != CodeDirectoryError || !strings.Contains(d.Reason, "malformed group DN") {
		t.Fatalf("got %v rule %q (%s)", d.Code, d.Rule, d.Reason)
	}
}
