package policy

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const pki = "../testdata/pki/"

// testConfig is the shared test policy over the committed PKI.
func testConfig() *Config {
	return &Config{
		Trust: TrustConfig{
			ClientCA:      []string{pki + "employee-root.pem", pki + "device-ca.pem"},
			Intermediates: []string{pki + "employee-int.pem", pki + "long-int1.pem", pki + "long-int2.pem", pki + "long-int3.pem"},
			CRL: []string{pki + "employee-root.crl", pki + "employee-int.crl", pki + "device-ca.crl",
				pki + "long-int1.crl", pki + "long-int2.crl", pki + "long-int3.crl"},
			ServerCert: pki + "server.pem",
			ServerKey:  pki + "server.key",
		},
		Identity: IdentityConfig{
			Device: []DeviceRuleConfig{{Name: "thermostats", IssuerCA: pki + "device-ca.pem", LookupBy: []string{"serial"}}},
		},
		Rules: []RuleConfig{
			{Name: "thermostats", Kind: "device", Groups: []string{"thermostats"}, WiFi: &WiFiConfig{VLAN: "30"}},
			{Name: "blocked", Groups: []string{"cn=blocked,ou=groups,dc=example,dc=com"}, Deny: true},
			{Name: "engineering", Groups: []string{"CN=Engineering,OU=Groups,DC=example,DC=com"},
				WiFi: &WiFiConfig{VLAN: "10", SessionTimeout: Duration{8 * time.Hour}},
				VPN:  &VPNConfig{Allow: []string{"10.10.0.0/16", "10.20.0.5 tcp/22,443"}}},
			{Name: "sales", Groups: []string{"sales"}, WiFi: &WiFiConfig{VLAN: "20"}},
		},
	}
}

func mustCompile(t testing.TB, c *Config) *Policy {
	t.Helper()
	p, err := Compile(c)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func loadChain(t testing.TB, name string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pki, name))
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func TestVerifyOutcomes(t *testing.T) {
	p := mustCompile(t, testConfig())
	tests := []struct {
		file string
		code Code
		want string // substring of the reason
	}{
		{"alice.pem", CodeAllowed, "trusted"},       // leaf only: server supplies the intermediate
		{"alice-chain.pem", CodeAllowed, "trusted"}, // full chain
		{"erin-chain.pem", CodeAllowed, "trusted"},  // long RSA chain
		{"erin.pem", CodeAllowed, "trusted"},        // long chain, intermediates configured
		{"thermostat-0001.pem", CodeAllowed, "trusted"},
		{"carol.pem", CodeRevoked, "revoked"},
		{"dave.pem", CodeExpired, "validity"},
		{"mallory-wrongca.pem", CodeUntrusted, "does not chain"},
		{"mallory-spoofed-chain.pem", CodeUntrusted, "does not chain"},
		{"mallory-spoofed.pem", CodeUntrusted, "does not chain"},
		{"noeku.pem", CodeBadUsage, "clientAuth"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d := p.Verify(loadChain(t, tt.file))
			if d.Code != tt.code || !strings.Contains(d.Reason, tt.want) {
				t.Fatalf("got %v %q, want %v containing %q", d.Code, d.Reason, tt.code, tt.want)
			}
			if tt.code == CodeAllowed && (len(d.Chain) < 2 || len(d.Revocation) != len(d.Chain)-1) {
				t.Fatalf("chain %d certs, %d revocation results", len(d.Chain), len(d.Revocation))
			}
		})
	}
	if d := p.Verify(nil); d.Code != CodeNoCertificate {
		t.Errorf("empty chain: %v", d.Code)
	}
}

func TestRevocationModes(t *testing.T) {
	// Without the employee-int CRL, alice's revocation status is unknown.
	cfg := testConfig()
	cfg.Trust.CRL = []string{pki + "employee-root.crl", pki + "device-ca.crl"}
	alice := loadChain(t, "alice.pem")
	for _, tt := range []struct {
		mode string
		code Code
	}{{"", CodeRevocationUnknown}, {"require", CodeRevocationUnknown}, {"best_effort", CodeAllowed}, {"off", CodeAllowed}} {
		cfg.Trust.Revocation = tt.mode
		if d := mustCompile(t, cfg).Verify(alice); d.Code != tt.code {
			t.Errorf("revocation=%q: %v %q, want %v", tt.mode, d.Code, d.Reason, tt.code)
		}
	}
	// An expired CRL means unknown: decide after its nextUpdate (but with
	// the certificates still valid, by using the CRL's own time frame).
	p := mustCompile(t, testConfig())
	d := p.VerifyAt(alice, time.Date(2044, 12, 31, 23, 59, 0, 0, time.UTC))
	if d.Code != CodeAllowed {
		t.Fatalf("before nextUpdate: %v %q", d.Code, d.Reason)
	}
	d = p.VerifyAt(alice, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	if d.Code != CodeNotYetValid {
		t.Fatalf("before notBefore: %v %q", d.Code, d.Reason)
	}
}

func TestCRLNotYetValidOrExpired(t *testing.T) {
	p := mustCompile(t, testConfig())
	alice := loadChain(t, "alice.pem")
	// Tamper with the compiled CRL's dates to simulate a stale list.
	for _, lists := range p.trust.crls {
		for _, l := range lists {
			l.NextUpdate = time.Now().Add(-time.Hour)
		}
	}
	d := p.Verify(alice)
	if d.Code != CodeRevocationUnknown || !strings.Contains(d.Reason, "CRL expired") {
		t.Fatalf("stale CRL: %v %q", d.Code, d.Reason)
	}
}

func TestCompileRejectsForeignCRL(t *testing.T) {
	cfg := testConfig()
	cfg.Trust.ClientCA = []string{pki + "device-ca.pem"}
	cfg.Trust.Intermediates = nil
	cfg.Identity.Device = nil
	_, err := Compile(cfg)
	if err == nil || !strings.Contains(err.Error(), "trust.crl[0]") || !strings.Contains(err.Error(), "not signed by any configured CA") {
		t.Fatalf("err = %v", err)
	}
}

// fakeDir is a Directory for unit tests of pure logic.
type fakeDir struct {
	entries map[string][]string // id → groups; the DN is "uid=<id>,ou=people"
	err     error
	calls   int
	last    map[string]string
}

func (f *fakeDir) Lookup(_ context.Context, kind string, fields map[string]string) (string, []string, error) {
	f.calls++
	f.last = fields
	if f.err != nil {
		return "", nil, f.err
	}
	g, ok := f.entries[kind+":"+fields["id"]]
	if !ok {
		return "", nil, nil
	}
	return "uid=" + fields["id"] + ",ou=people,dc=example,dc=com", g, nil
}

type outage struct{}

func (outage) Error() string     { return "connection refused" }
func (outage) Unavailable() bool { return true }

func TestAuthorize(t *testing.T) {
	dir := &fakeDir{entries: map[string][]string{
		"user:alice@corp.example.com": {"cn=backend,ou=groups,dc=example,dc=com", "cn=engineering,ou=groups,dc=example,dc=com"},
		"user:bob@example.com":        {`cn=R&D\2C Lab,ou=groups,dc=example,dc=com`, "CN=Sales,OU=groups,DC=example,DC=com"},
		"user:frank@example.com":      nil,
		"device:TH-0001":              {"cn=thermostats,ou=groups,dc=example,dc=com"},
		"user:erin@example.com":       {"cn=blocked,ou=groups,dc=example,dc=com", "cn=engineering,ou=groups,dc=example,dc=com"},
	}}
	a := NewAuthorizer(mustCompile(t, testConfig()), dir, nil)
	tests := []struct {
		file  string
		code  Code
		rule  string
		kind  Kind
		field string
		vlan  string
	}{
		{"alice.pem", CodeAllowed, "engineering", KindUser, "upn", "10"},
		{"bob.pem", CodeAllowed, "sales", KindUser, "email", "20"},
		{"frank.pem", CodeNoRule, "", KindUser, "email", ""},
		{"thermostat-0001.pem", CodeAllowed, "thermostats", KindDevice, "serial", "30"},
		{"erin-chain.pem", CodeRuleDenies, "blocked", KindUser, "email", ""},
		{"noeku.pem", CodeBadUsage, "", KindUser, "", ""},
		{"carol.pem", CodeRevoked, "", KindUser, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d := a.Authorize(context.Background(), loadChain(t, tt.file))
			if d.Code != tt.code || d.Rule != tt.rule || d.Allowed != (tt.code == CodeAllowed) {
				t.Fatalf("got %v rule %q allowed %v (%s), want %v rule %q", d.Code, d.Rule, d.Allowed, d.Reason, tt.code, tt.rule)
			}
			if d.Identity.Kind != tt.kind || d.Identity.Field != tt.field || d.WiFi.VLAN != tt.vlan {
				t.Fatalf("identity %v/%q vlan %q", d.Identity.Kind, d.Identity.Field, d.WiFi.VLAN)
			}
		})
	}
	d := a.Authorize(context.Background(), loadChain(t, "alice.pem"))
	if d.VPN == nil || len(d.VPN.Allow) != 2 || d.WiFi.SessionTimeout != 8*time.Hour || !d.WiFi.Permitted {
		t.Fatalf("alice access: %+v %+v", d.WiFi, d.VPN)
	}
	if dir.last["upn"] != "alice@corp.example.com" || dir.last["email"] != "alice@example.com" || dir.last["cn"] != "Alice Example" || len(dir.last["fingerprint"]) != 64 {
		t.Fatalf("lookup fields %v", dir.last)
	}
	// Directory failures deny with the right code.
	dir.err = outage{}
	if d := a.Authorize(context.Background(), loadChain(t, "alice.pem")); d.Code != CodeDirectoryUnavailable || d.Allowed {
		t.Fatalf("outage: %v", d.Code)
	}
	dir.err = errors.New("ambiguous: 2 entries")
	if d := a.Authorize(context.Background(), loadChain(t, "alice.pem")); d.Code != CodeDirectoryError || !strings.Contains(d.Reason, "ambiguous") {
		t.Fatalf("ambiguous: %v %q", d.Code, d.Reason)
	}
	dir.err = nil
	dir.entries = nil
	if d := a.Authorize(context.Background(), loadChain(t, "alice.pem")); d.Code != CodeNotInDirectory {
		t.Fatalf("not found: %v", d.Code)
	}
	// No policy: deny.
	if d := NewAuthorizer(nil, dir, nil).Authorize(context.Background(), loadChain(t, "alice.pem")); d.Code != CodePolicyUnavailable {
		t.Fatalf("no policy: %v", d.Code)
	}
}

func TestSwapTakesEffect(t *testing.T) {
	dir := &fakeDir{entries: map[string][]string{"user:bob@example.com": {"cn=sales,ou=groups,dc=example,dc=com"}}}
	a := NewAuthorizer(mustCompile(t, testConfig()), dir, nil)
	bob := loadChain(t, "bob.pem")
	if d := a.Authorize(context.Background(), bob); d.WiFi.VLAN != "20" {
		t.Fatalf("before: %v", d.WiFi.VLAN)
	}
	cfg := testConfig()
	cfg.Rules[3].WiFi.VLAN = "21"
	a.Swap(mustCompile(t, cfg))
	if d := a.Authorize(context.Background(), bob); d.WiFi.VLAN != "21" {
		t.Fatalf("after swap: %v", d.WiFi.VLAN)
	}
}

func TestIdentityRuleConditions(t *testing.T) {
	dir := &fakeDir{entries: map[string][]string{"user:bob@example.com": nil, "user:alice@corp.example.com": nil}}
	cfg := testConfig()
	cfg.Rules = []RuleConfig{{Name: "by-domain", Identity: map[string][]string{"email": {"*@EXAMPLE.com"}}, WiFi: &WiFiConfig{VLAN: "5"}}}
	a := NewAuthorizer(mustCompile(t, cfg), dir, nil)
	if d := a.Authorize(context.Background(), loadChain(t, "bob.pem")); !d.Allowed || d.Rule != "by-domain" {
		t.Fatalf("bob: %v %q", d.Code, d.Reason)
	}
	cfg.Rules[0].Identity = map[string][]string{"cn": {"Bob Example"}}
	a.Swap(mustCompile(t, cfg))
	if d := a.Authorize(context.Background(), loadChain(t, "alice.pem")); d.Allowed {
		t.Fatal("alice matched cn Bob Example")
	}
}

// TestDoorsFollowTables: a rule grants only the doors it has a table for.
func TestDoorsFollowTables(t *testing.T) {
	dir := &fakeDir{entries: map[string][]string{"user:bob@example.com": {"cn=sales,ou=groups,dc=example,dc=com"}}}
	cfg := testConfig()
	cfg.Rules[3].WiFi = nil // sales: VPN only
	cfg.Rules[3].VPN = &VPNConfig{Allow: []string{"10.30.0.0/24 tcp/443"}}
	d := NewAuthorizer(mustCompile(t, cfg), dir, nil).Authorize(context.Background(), loadChain(t, "bob.pem"))
	if !d.Allowed || d.WiFi.Permitted || d.VPN == nil {
		t.Fatalf("VPN-only rule: allowed %v wifi %+v vpn %v", d.Allowed, d.WiFi, d.VPN)
	}
	cfg.Rules[3].VPN, cfg.Rules[3].WiFi = nil, &WiFiConfig{VLAN: "20"}
	d = NewAuthorizer(mustCompile(t, cfg), dir, nil).Authorize(context.Background(), loadChain(t, "bob.pem"))
	if !d.Allowed || !d.WiFi.Permitted || d.VPN != nil {
		t.Fatalf("Wi-Fi-only rule: allowed %v wifi %+v vpn %v", d.Allowed, d.WiFi, d.VPN)
	}
}
