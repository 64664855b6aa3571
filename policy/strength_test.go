package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

// employeeInt is the committed test PKI's employee issuing CA, with its key,
// to issue more certificates in a test.
func employeeInt(t *testing.T) *policytest.CA {
	t.Helper()
	return policytest.MustLoadCA(t, pki+"employee-int.pem", pki+"employee-int.key")
}

func writePEM(t *testing.T, name string, b []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func ecKey(t *testing.T, c elliptic.Curve) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestWeakKeys(t *testing.T) {
	inter := employeeInt(t)
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(o policytest.LeafOptions) []*x509.Certificate {
		o.CN, o.Emails = "Weak Example", []string{"weak@example.com"}
		return []*x509.Certificate{inter.MustIssue(t, o).Cert}
	}
	p := mustCompile(t, testConfig())
	cfg := testConfig()
	cfg.Trust.MinRSABits = 3072
	p3072 := mustCompile(t, cfg)
	tests := []struct {
		name  string
		p     *Policy
		chain []*x509.Certificate
		code  Code
		want  string
	}{
		{"RSA-1024", p, leaf(policytest.LeafOptions{RSABits: 1024}), CodeWeakKey, `certificate "CN=Weak Example" has a weak RSA-1024 key (at least 2048 bits required)`},
		{"RSA-2048", p, leaf(policytest.LeafOptions{RSABits: 2048}), CodeAllowed, "trusted"},
		{"RSA-2048 under min_rsa_bits 3072", p3072, leaf(policytest.LeafOptions{RSABits: 2048}), CodeWeakKey, "weak RSA-2048 key (at least 3072 bits required)"},
		{"P-224", p, leaf(policytest.LeafOptions{Key: ecKey(t, elliptic.P224())}), CodeWeakKey, "weak ECDSA key on curve P-224"},
		{"P-256", p, leaf(policytest.LeafOptions{}), CodeAllowed, "trusted"},
		{"P-384", p, leaf(policytest.LeafOptions{Key: ecKey(t, elliptic.P384())}), CodeAllowed, "trusted"},
		{"P-521", p, leaf(policytest.LeafOptions{Key: ecKey(t, elliptic.P521())}), CodeAllowed, "trusted"},
		{"Ed25519", p, leaf(policytest.LeafOptions{Key: edKey}), CodeAllowed, "trusted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.p.Verify(tt.chain)
			if d.Code != tt.code || !strings.Contains(d.Reason, tt.want) {
				t.Fatalf("got %v %q, want %v containing %q", d.Code, d.Reason, tt.code, tt.want)
			}
		})
	}
	if CodeWeakKey.String() != "weak_key" {
		t.Errorf("code name %q", CodeWeakKey)
	}
}

// TestWeakCAKeys: a weak key anywhere in the chain denies — a presented
// intermediate at decision time, a configured CA at compile time.
func TestWeakCAKeys(t *testing.T) {
	root := policytest.NewCA(t, "Strong Root")
	weakInt := root.MustIntermediate(t, "Weak Intermediate", policytest.CAOptions{RSABits: 1024})
	l := weakInt.MustIssue(t, policytest.LeafOptions{CN: "Under Weak"})
	cfg := testConfig()
	cfg.Trust.ClientCA = append(cfg.Trust.ClientCA, writePEM(t, "root.pem", root.PEM))
	cfg.Trust.Revocation = RevocationOff
	d := mustCompile(t, cfg).Verify([]*x509.Certificate{l.Cert, weakInt.Cert})
	if d.Code != CodeWeakKey || !strings.Contains(d.Reason, `CA certificate "CN=Weak Intermediate,O=gatehouse test" has a weak RSA-1024 key`) {
		t.Fatalf("weak presented intermediate: %v %q", d.Code, d.Reason)
	}

	weakRoot := policytest.NewCA(t, "Weak Root", policytest.CAOptions{RSABits: 1024})
	cfg = testConfig()
	cfg.Trust.ClientCA[1] = writePEM(t, "weak-root.pem", weakRoot.PEM)
	cfg.Identity.Device = nil
	cfg.Trust.CRL = cfg.Trust.CRL[:2]
	_, err := Compile(cfg)
	if err == nil || !strings.Contains(err.Error(), `trust.client_ca[1]: "`+cfg.Trust.ClientCA[1]+`": "CN=Weak Root,O=gatehouse test" has a weak RSA-1024 key`) {
		t.Fatalf("weak configured root: %v", err)
	}
	cfg = testConfig()
	cfg.Trust.Intermediates = append(cfg.Trust.Intermediates, writePEM(t, "weak-int.pem", weakInt.PEM))
	cfg.Trust.ClientCA = append(cfg.Trust.ClientCA, writePEM(t, "root.pem", root.PEM))
	if _, err := Compile(cfg); err == nil || !strings.Contains(err.Error(), "trust.intermediates[4]") || !strings.Contains(err.Error(), "weak RSA-1024 key") {
		t.Fatalf("weak configured intermediate: %v", err)
	}
	for _, bits := range []int{1024, 2047, 1 << 20} {
		cfg := testConfig()
		cfg.Trust.MinRSABits = bits
		if _, err := Compile(cfg); err == nil || !strings.Contains(err.Error(), "trust.min_rsa_bits") {
			t.Errorf("min_rsa_bits = %d: %v", bits, err)
		}
	}
}

// TestDenialCauses: a weakly signed or not yet valid certificate is
// reported as such, not as "untrusted" or "expired".
func TestDenialCauses(t *testing.T) {
	inter := employeeInt(t)
	now := time.Now()
	// A CA with employee-int's name but another key: its SHA-1 leaves are
	// forgeries, untrusted rather than weak.
	forger := policytest.NewCA(t, "", policytest.CAOptions{Subject: &inter.Cert.Subject})
	rogue := policytest.NewCA(t, "Rogue")
	// A configured root whose intermediate is SHA-1-signed or expired.
	root := policytest.NewCA(t, "Extra Root", policytest.CAOptions{RSABits: 2048})
	sha1Int := root.MustIntermediate(t, "SHA-1 Intermediate", policytest.CAOptions{SignatureAlgorithm: x509.SHA1WithRSA})
	oldInt := root.MustIntermediate(t, "Expired Intermediate", policytest.CAOptions{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	futureInt := root.MustIntermediate(t, "Future Intermediate", policytest.CAOptions{NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour)})
	cfg := testConfig()
	cfg.Trust.ClientCA = append(cfg.Trust.ClientCA, writePEM(t, "root.pem", root.PEM))
	cfg.Trust.Revocation = RevocationBestEffort
	p := mustCompile(t, cfg)

	id := policytest.LeafOptions{CN: "Cause Example", Emails: []string{"cause@example.com"}}
	with := func(o policytest.LeafOptions, f func(*policytest.LeafOptions)) policytest.LeafOptions {
		f(&o)
		return o
	}
	sha1 := with(id, func(o *policytest.LeafOptions) { o.SignatureAlgorithm = x509.ECDSAWithSHA1 })
	inside := with(id, func(o *policytest.LeafOptions) { o.NotBefore, o.NotAfter = now.Add(-time.Hour), now.Add(time.Hour) })
	tests := []struct {
		name  string
		chain []*x509.Certificate
		code  Code
		want  string
	}{
		{"SHA-1 leaf of the trusted CA", []*x509.Certificate{inter.MustIssue(t, sha1).Cert}, CodeWeakSignature,
			`certificate "CN=Cause Example" is signed with ECDSA-SHA1, a weak algorithm`},
		{"SHA-1 leaf with its chain", []*x509.Certificate{inter.MustIssue(t, sha1).Cert, inter.Cert}, CodeWeakSignature, "ECDSA-SHA1"},
		{"SHA-1 forgery", []*x509.Certificate{forger.MustIssue(t, sha1).Cert}, CodeUntrusted, "does not chain to a trusted client CA"},
		{"SHA-1 leaf of a rogue CA", []*x509.Certificate{rogue.MustIssue(t, sha1).Cert}, CodeUntrusted, "does not chain"},
		{"SHA-1 intermediate", []*x509.Certificate{sha1Int.MustIssue(t, id).Cert, sha1Int.Cert}, CodeWeakSignature,
			`certificate "CN=SHA-1 Intermediate,O=gatehouse test" is signed with SHA1-RSA`},
		{"not yet valid leaf", []*x509.Certificate{inter.MustIssue(t, with(id, func(o *policytest.LeafOptions) { o.NotBefore = now.Add(24 * time.Hour) })).Cert},
			CodeNotYetValid, `certificate "CN=Cause Example" is not valid yet`},
		{"expired leaf", []*x509.Certificate{inter.MustIssue(t, with(id, func(o *policytest.LeafOptions) {
			o.NotBefore, o.NotAfter = now.Add(-48*time.Hour), now.Add(-24*time.Hour)
		})).Cert}, CodeExpired, `certificate "CN=Cause Example" has expired`},
		{"expired leaf of a rogue CA", []*x509.Certificate{rogue.MustIssue(t, with(id, func(o *policytest.LeafOptions) {
			o.NotBefore, o.NotAfter = now.Add(-48*time.Hour), now.Add(-24*time.Hour)
		})).Cert}, CodeUntrusted, "does not chain"},
		{"not yet valid SHA-1 leaf", []*x509.Certificate{inter.MustIssue(t, with(sha1, func(o *policytest.LeafOptions) { o.NotBefore = now.Add(24 * time.Hour) })).Cert},
			CodeWeakSignature, "ECDSA-SHA1"},
		{"expired intermediate", []*x509.Certificate{oldInt.MustIssue(t, inside).Cert, oldInt.Cert}, CodeExpired,
			`CA certificate "CN=Expired Intermediate,O=gatehouse test" has expired`},
		{"not yet valid intermediate", []*x509.Certificate{futureInt.MustIssue(t, inside).Cert, futureInt.Cert}, CodeNotYetValid,
			`CA certificate "CN=Future Intermediate,O=gatehouse test" is not valid yet`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Verify(tt.chain)
			if d.Code != tt.code || !strings.Contains(d.Reason, tt.want) {
				t.Fatalf("got %v %q, want %v containing %q", d.Code, d.Reason, tt.code, tt.want)
			}
		})
	}
	// A configured intermediate signed with SHA-1 is a configuration error.
	cfg = testConfig()
	cfg.Trust.Intermediates = append(cfg.Trust.Intermediates, writePEM(t, "sha1-int.pem", sha1Int.PEM))
	cfg.Trust.ClientCA = append(cfg.Trust.ClientCA, writePEM(t, "root.pem", root.PEM))
	if _, err := Compile(cfg); err == nil || !strings.Contains(err.Error(), `trust.intermediates[4]`) || !strings.Contains(err.Error(), `"CN=SHA-1 Intermediate,O=gatehouse test" is signed with SHA1-RSA, a weak algorithm`) {
		t.Errorf("SHA-1 configured intermediate: %v", err)
	}
	for c, name := range map[Code]string{CodeWeakSignature: "weak_signature", CodeNotYetValid: "not_yet_valid", CodeExpired: "expired"} {
		if c.String() != name {
			t.Errorf("code %d is %q, want %q", c, c, name)
		}
	}
}

func TestTrustStepCodes(t *testing.T) {
	for _, c := range []Code{CodeNoCertificate, CodeUntrusted, CodeBadUsage, CodeExpired, CodeNotYetValid, CodeWeakKey, CodeWeakSignature, CodeRevoked, CodeRevocationUnknown} {
		if !c.TrustStep() {
			t.Errorf("%v: not a trust-step code", c)
		}
	}
	for _, c := range []Code{CodeAllowed, CodeNoIdentity, CodeNotInDirectory, CodeNoRule, CodeRuleDenies, CodeDoorNotPermitted} {
		if c.TrustStep() {
			t.Errorf("%v: a trust-step code", c)
		}
	}
}
