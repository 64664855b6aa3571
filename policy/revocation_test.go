package policy

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestCompileRevocationSources(t *testing.T) {
	src := func(c *Config, s ...CASourceConfig) { c.Trust.CASource = s }
	tests := []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"bad ocsp mode", func(c *Config) { c.Trust.OCSP = "always" }, `trust.ocsp: "always": must be "off", "prefer" or "require"`},
		{"refresh too short", func(c *Config) { c.Trust.CRLRefresh = Duration{time.Millisecond} }, `trust.crl_refresh: "1ms": must be at least 1s`},
		{"negative timeout", func(c *Config) { c.Trust.OCSPTimeout = Duration{-time.Second} }, `trust.ocsp_timeout: "-1s": must be positive`},
		{"require without responder", func(c *Config) { c.Trust.OCSP = "require" }, `trust.ocsp: "require": no trust.ca_source has an ocsp_responder`},
		{"ocsp with revocation off", func(c *Config) {
			c.Trust.Revocation, c.Trust.OCSP = "off", "prefer"
			src(c, CASourceConfig{CA: pki + "employee-int.pem", OCSPResponder: "http://ocsp.example"})
		}, `trust.ocsp: "prefer": must be "off" when trust.revocation is "off"`},
		{"ftp URL", func(c *Config) {
			src(c, CASourceConfig{CA: pki + "employee-int.pem", CRLURL: "http://crl.example/a.crl"}, CASourceConfig{CA: pki + "device-ca.pem", CRLURL: "ftp://x"})
		}, `trust.ca_source[1].crl_url: "ftp://x": must be an http or https URL`},
		{"responder without host", func(c *Config) { src(c, CASourceConfig{CA: pki + "employee-int.pem", OCSPResponder: "http:///ocsp"}) }, `trust.ca_source[0].ocsp_responder: "http:///ocsp": URL has no host`},
		{"credentials in URL", func(c *Config) {
			src(c, CASourceConfig{CA: pki + "employee-int.pem", CRLURL: "https://u:p@crl.example/"})
		}, "must not carry credentials"},
		{"no CA", func(c *Config) { src(c, CASourceConfig{CRLURL: "http://crl.example/"}) }, "trust.ca_source[0].ca: the CA file is required"},
		{"unknown CA", func(c *Config) { src(c, CASourceConfig{CA: pki + "rogue-root.pem", CRLURL: "http://crl.example/"}) }, `trust.ca_source[0].ca: "../testdata/pki/rogue-root.pem": not among trust.client_ca or trust.intermediates`},
		{"nothing to ask", func(c *Config) { src(c, CASourceConfig{CA: pki + "employee-int.pem"}) }, "trust.ca_source[0]: a CA source needs crl_url, ocsp_responder or both"},
		{"two responders", func(c *Config) {
			src(c, CASourceConfig{CA: pki + "employee-int.pem", OCSPResponder: "http://a.example"}, CASourceConfig{CA: pki + "employee-int.pem", OCSPResponder: "http://b.example"})
		}, `trust.ca_source[1].ocsp_responder: "http://b.example": this CA already has OCSP responder "http://a.example"`},
		{"same URL twice", func(c *Config) {
			src(c, CASourceConfig{CA: pki + "employee-int.pem", CRLURL: "http://a.example"}, CASourceConfig{CA: pki + "employee-int.pem", CRLURL: "http://a.example"})
		}, `trust.ca_source[1].crl_url: "http://a.example": listed twice for this CA`},
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

	// A valid configuration: defaults filled in, summary counts.
	c := testConfig()
	c.Trust.OCSP = "prefer"
	src(c, CASourceConfig{CA: pki + "employee-int.pem", CRLURL: "http://crl.example/int.crl", OCSPResponder: "http://ocsp.example"},
		CASourceConfig{CA: pki + "device-ca.pem", CRLURL: "https://crl.example/dev.crl"})
	p := mustCompile(t, c)
	s := p.Revocation()
	if s.CRLRefresh != DefaultCRLRefresh || s.OCSPTimeout != DefaultOCSPTimeout || s.OCSP != OCSPPrefer || len(s.Sources) != 2 || s.Sources[0].CA.Subject.CommonName == "" {
		t.Fatalf("settings %+v", s)
	}
	if sum := p.Summary(); sum.CRLURLs != 2 || sum.OCSPResponders != 1 || sum.OCSP != "prefer" {
		t.Fatalf("summary %+v", sum)
	}
	// Without a checker, an OCSP-covered CA falls back to its CRL file.
	d := p.Verify(loadChain(t, "alice.pem"))
	if d.Code != CodeAllowed || !strings.Contains(d.Revocation[0].Detail, "no OCSP client attached") || d.Revocation[0].Source != "crl file "+pki+"employee-int.crl" {
		t.Fatalf("%v %q %+v", d.Code, d.Reason, d.Revocation)
	}
}

// fakeChecker answers from fixed values.
type fakeChecker struct {
	crl   *CRL
	ocsp  RevocationResult
	asked []string
}

func (f *fakeChecker) CRL(*x509.Certificate, string) *CRL { return f.crl }
func (f *fakeChecker) OCSP(_ context.Context, q OCSPQuery) RevocationResult {
	f.asked = append(f.asked, q.Responder)
	return f.ocsp
}

func TestNewestCRLWins(t *testing.T) {
	c := testConfig()
	c.Trust.CASource = []CASourceConfig{{CA: pki + "employee-int.pem", CRLURL: "http://crl.example/int.crl"}}
	p := mustCompile(t, c)
	carol := loadChain(t, "carol.pem")
	file := p.trust.crls[caKey(t, "employee-int.pem")][0]
	// A fetched CRL older than the file does not win; a newer one does.
	older := &CRL{Source: "http://crl.example/int.crl (fetched x)", ThisUpdate: file.ThisUpdate.Add(-time.Hour), NextUpdate: file.NextUpdate, revoked: map[string]time.Time{}}
	d := p.VerifyContext(context.Background(), carol, time.Now(), &fakeChecker{crl: older})
	if d.Code != CodeRevoked || !strings.HasPrefix(d.Revocation[0].Source, "crl file ") {
		t.Fatalf("older fetched CRL: %v %+v", d.Code, d.Revocation)
	}
	newer := &CRL{Source: "http://crl.example/int.crl (fetched x)", ThisUpdate: file.ThisUpdate.Add(time.Hour), NextUpdate: file.NextUpdate, revoked: map[string]time.Time{}}
	d = p.VerifyContext(context.Background(), carol, time.Now(), &fakeChecker{crl: newer})
	if d.Code != CodeAllowed || d.Revocation[0].Source != "crl http://crl.example/int.crl (fetched x)" {
		t.Fatalf("newer fetched CRL (carol reinstated): %v %+v", d.Code, d.Revocation)
	}
	// Same thisUpdate: the larger CRL number wins.
	a := &CRL{ThisUpdate: file.ThisUpdate, Number: big.NewInt(2)}
	b := &CRL{ThisUpdate: file.ThisUpdate, Number: big.NewInt(3)}
	if !b.Newer(a) || a.Newer(b) || a.Newer(a) {
		t.Fatal("CRL number ordering")
	}
}

func TestStaleCRLStillRevokes(t *testing.T) {
	p := mustCompile(t, testConfig())
	for _, l := range p.trust.crls[caKey(t, "employee-int.pem")] {
		l.NextUpdate = time.Now().Add(-time.Hour)
	}
	c := p.Verify(loadChain(t, "carol.pem"))
	if c.Code != CodeRevoked {
		t.Fatalf("carol on an expired CRL: %v %q", c.Code, c.Reason)
	}
}

func TestAuthorizerUsesChecker(t *testing.T) {
	c := testConfig()
	c.Trust.OCSP = "require"
	c.Trust.CASource = []CASourceConfig{{CA: pki + "employee-int.pem", OCSPResponder: "http://ocsp.example"}}
	p := mustCompile(t, c)
	a := NewAuthorizer(p, &fakeDir{}, nil)
	alice := loadChain(t, "alice.pem")
	if d := a.Authorize(context.Background(), alice); d.Code != CodeRevocationUnknown || !strings.Contains(d.Reason, "no OCSP client attached") {
		t.Fatalf("no checker: %v %q", d.Code, d.Reason)
	}
	fc := &fakeChecker{ocsp: RevocationResult{Source: "ocsp http://ocsp.example", Status: "revoked", Detail: "revoked at x"}}
	a.SetRevocation(fc)
	if a.Revocation() != fc {
		t.Fatal("Revocation() does not return the checker")
	}
	if d := a.Authorize(context.Background(), alice); d.Code != CodeRevoked || d.Revocation[0].Subject != "CN=Alice Example" || len(fc.asked) != 1 || fc.asked[0] != "http://ocsp.example" {
		t.Fatalf("checker: %v %q %+v asked %v", d.Code, d.Reason, d.Revocation, fc.asked)
	}
	a.SetRevocation(nil)
	if a.Revocation() != nil {
		t.Fatal("SetRevocation(nil)")
	}
}

// caKey is the key of a CA file in trust.crls and trust.sources.
func caKey(t testing.TB, file string) [32]byte {
	t.Helper()
	certs, err := ReadCertificates(pki + file)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(certs[0].Raw)
}

func FuzzParseCRL(f *testing.F) {
	p := mustCompile(f, testConfig())
	k := caKey(f, "employee-int.pem")
	l := p.trust.crls[k][0]
	f.Add(l.Raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCRL(b, l.Issuer, "fuzz")
		if err == nil && c.Issuer != l.Issuer {
			t.Fatal("issuer")
		}
	})
}
