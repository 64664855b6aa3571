package policy

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
)

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"no client CA", func(c *Config) { c.Trust.ClientCA = nil }, "trust.client_ca: at least one client CA is required"},
		{"missing CA file", func(c *Config) { c.Trust.ClientCA[1] = "nope.pem" }, `trust.client_ca[1]: "nope.pem": open nope.pem`},
		{"CA file not PEM", func(c *Config) { c.Trust.ClientCA[0] = pki + "README.md" }, `no PEM block found (want "CERTIFICATE")`},
		{"leaf as CA", func(c *Config) { c.Trust.ClientCA[0] = pki + "alice.pem" }, "is not a CA certificate"},
		{"bad revocation", func(c *Config) { c.Trust.Revocation = "maybe" }, `trust.revocation: "maybe": must be`},
		{"CRL not a CRL", func(c *Config) { c.Trust.CRL[0] = pki + "alice.pem" }, `trust.crl[0]: "../testdata/pki/alice.pem": PEM block 1 is "CERTIFICATE", want "X509 CRL"`},
		{"key without cert", func(c *Config) { c.Trust.ServerCert = "" }, "server_cert and server_key go together"},
		{"wrong key", func(c *Config) { c.Trust.ServerKey = pki + "alice.key" }, "trust.server_key"},
		{"bad tls version", func(c *Config) { c.Trust.TLSMinVersion = "1.1" }, `trust.tls_min_version: "1.1"`},
		{"bad user_from", func(c *Config) { c.Identity.UserFrom = []string{"upn", "phone"} }, `identity.user_from[1]: "phone": unknown identity field`},
		{"empty device rule", func(c *Config) { c.Identity.Device = []DeviceRuleConfig{{Name: "x"}} }, "identity.device[0]: a device rule needs"},
		{"device CA not trusted", func(c *Config) { c.Identity.Device[0].IssuerCA = pki + "rogue-root.pem" }, "not among trust.client_ca"},
		{"rule without name", func(c *Config) { c.Rules[1].Name = "" }, "policy[1].name: every rule needs a name"},
		{"duplicate rule", func(c *Config) { c.Rules[3].Name = "engineering" }, "policy[3].name: \"engineering\": duplicate rule name (also policy[2])"},
		{"bad kind", func(c *Config) { c.Rules[0].Kind = "robot" }, `policy[0].kind: "robot"`},
		{"bad group DN", func(c *Config) { c.Rules[0].Groups = []string{`cn=x\`} }, "policy[0].groups[0]"},
		{"bad vlan", func(c *Config) { c.Rules[0].WiFi.VLAN = "5000" }, `policy[0].wifi.vlan: "5000": VLAN number must be 1-4094`},
		{"bad prefix", func(c *Config) { c.Rules[2].VPN.Allow[1] = "10.0/8 tcp/22" }, `policy[2].vpn.allow[1]: "10.0/8 tcp/22": bad prefix`},
		{"host bits", func(c *Config) { c.Rules[2].VPN.Allow[0] = "10.10.0.1/16" }, "host bits set (did you mean 10.10.0.0/16?)"},
		{"bad proto", func(c *Config) { c.Rules[2].VPN.Allow[0] = "10.0.0.0/8 sctp/1" }, `bad protocol "sctp/1"`},
		{"bad port", func(c *Config) { c.Rules[2].VPN.Allow[0] = "10.0.0.0/8 tcp/70000" }, `bad port "70000"`},
		{"bad port range", func(c *Config) { c.Rules[2].VPN.Allow[0] = "10.0.0.0/8 tcp/90-80" }, `bad port range "90-80"`},
		{"icmp ports", func(c *Config) { c.Rules[2].VPN.Allow[0] = "10.0.0.0/8 icmp/8" }, "icmp takes no ports"},
		{"bad dns", func(c *Config) { c.Rules[2].VPN.DNS = []string{"dns.example"} }, `policy[2].vpn.dns[0]: "dns.example": bad IP address`},
		{"bad route", func(c *Config) { c.Rules[2].VPN.Routes = []string{"x"} }, `policy[2].vpn.routes[0]`},
		{"deny with access", func(c *Config) { c.Rules[1].WiFi = &WiFiConfig{} }, "a deny rule cannot also grant"},
		{"empty groups", func(c *Config) { c.Rules[3].Groups = []string{} }, "policy[3].groups: empty list matches nobody; write everyone = true"},
		{"everyone and groups", func(c *Config) { c.Rules[3].Everyone = true }, `policy[3].everyone: "true": everyone = true and groups exclude each other`},
		{"rule without condition", func(c *Config) { c.Rules[3].Groups = nil }, "policy[3]: the rule names no groups and no identity conditions; write everyone = true"},
		{"kind is no condition", func(c *Config) { c.Rules[0].Groups = nil }, "policy[0]: the rule names no groups"},
		{"bad identity cond", func(c *Config) { c.Rules[0].Identity = map[string][]string{"shoe": {"x"}} }, "policy[0].identity.shoe: unknown identity field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.mod(c)
			_, err := Compile(c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseAllow(t *testing.T) {
	d, err := ParseAllow("10.20.0.5 tcp/22,443,8000-8100 udp/53 icmp")
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 3 || d[0].Prefix.String() != "10.20.0.5/32" || len(d[0].Ports) != 3 || d[0].Ports[2] != (PortRange{8000, 8100}) || d[1].Proto != ProtoUDP || d[2].Proto != ProtoICMP {
		t.Fatalf("%+v", d)
	}
	d, _ = ParseAllow("fd00::/64")
	if d[0].Proto != ProtoAny || d[0].Prefix.Bits() != 64 {
		t.Fatalf("%+v", d)
	}
}

func FuzzParseAllow(f *testing.F) {
	for _, s := range []string{"10.20.0.5 tcp/22,443", "10.0.0.0/8", "::1 udp/1-65535 icmp", "10.0/8", "x tcp/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ds, err := ParseAllow(s)
		if err != nil {
			return
		}
		for _, d := range ds {
			if !d.Prefix.IsValid() || d.Prefix.Masked() != d.Prefix {
				t.Fatalf("%q: bad prefix %v", s, d.Prefix)
			}
			for _, r := range d.Ports {
				if r.First == 0 || r.First > r.Last {
					t.Fatalf("%q: bad range %v", s, r)
				}
			}
		}
	})
}

func FuzzIdentityOf(f *testing.F) {
	for _, name := range []string{"alice.pem", "thermostat-0001.pem", "erin.pem"} {
		f.Add(loadChain(f, name)[0].Raw)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			// Also feed the bytes straight to the SAN parser.
			parseUPNs(der)
			return
		}
		IdentityOf(c)
	})
}

func TestUPN(t *testing.T) {
	id, err := IdentityOf(loadChain(t, "alice.pem")[0])
	if err != nil || len(id.UPN) != 1 || id.UPN[0] != "alice@corp.example.com" {
		t.Fatalf("UPN %v err %v", id.UPN, err)
	}
	id, _ = IdentityOf(loadChain(t, "thermostat-0001.pem")[0])
	if id.Serial != "TH-0001" || id.UPN != nil {
		t.Fatalf("device identity %+v", id)
	}
}

// BenchmarkDecide measures a decision with a warm (in-memory) directory,
// excluding chain verification.
func BenchmarkDecide(b *testing.B) {
	dir := &fakeDir{entries: map[string][]string{
		"user:alice@corp.example.com": {"cn=backend,ou=groups,dc=example,dc=com", "cn=engineering,ou=groups,dc=example,dc=com", "cn=staff,ou=groups,dc=example,dc=com"},
	}}
	p := mustCompile(b, testConfig())
	a := NewAuthorizer(p, dir, nil)
	v := p.Verify(loadChain(b, "alice.pem"))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := a.Decide(ctx, p, v); !d.Allowed {
			b.Fatal(d.Reason)
		}
	}
}

// BenchmarkVerify measures the trust step: chain verification and
// revocation ("uncached": a chain not seen before; "cached": a chain the
// verified-chain cache holds, revocation still checked).
func BenchmarkVerify(b *testing.B) {
	for _, cached := range []bool{false, true} {
		name := "uncached"
		if cached {
			name = "cached"
		}
		b.Run(name, func(b *testing.B) {
			p := mustCompile(b, testConfig())
			chain := loadChain(b, "alice.pem")
			b.ReportAllocs()
			for b.Loop() {
				if !cached {
					p.trust.chains = newChainCache(maxCachedChains)
				}
				if d := p.Verify(chain); d.Code != CodeAllowed {
					b.Fatal(d.Reason)
				}
			}
		})
	}
}
