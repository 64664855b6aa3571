package audit

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

const pki = "../../testdata/pki/"

// TestDeniedLinesNameTheLeaf: every audit line for a presented certificate
// names it — subject, issuer, serial, fingerprint — also when the trust
// step denies it (revoked, untrusted, expired, …).
func TestDeniedLinesNameTheLeaf(t *testing.T) {
	p, err := policy.Compile(&policy.Config{
		Trust: policy.TrustConfig{
			ClientCA:      []string{pki + "employee-root.pem", pki + "device-ca.pem"},
			Intermediates: []string{pki + "employee-int.pem"},
			CRL:           []string{pki + "employee-root.crl", pki + "employee-int.crl", pki + "device-ca.crl"},
		},
		Rules: []policy.RuleConfig{{Name: "all", Everyone: true, WiFi: &policy.WiFiConfig{}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := policy.NewAuthorizer(p, nil, nil)
	for _, tt := range []struct {
		file string
		code policy.Code
	}{
		{"carol.pem", policy.CodeRevoked},
		{"mallory-wrongca.pem", policy.CodeUntrusted},
		{"dave.pem", policy.CodeExpired},
		{"noeku.pem", policy.CodeBadUsage},
	} {
		t.Run(tt.file, func(t *testing.T) {
			certs, err := policy.ReadCertificates(pki + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			d := a.Authorize(context.Background(), certs)
			if d.Code != tt.code {
				t.Fatalf("code %v (%s), want %v", d.Code, d.Reason, tt.code)
			}
			ev := policy.AuditEvent{Time: time.Now(), Door: "wifi", Event: "authenticate", Decision: d}
			b, err := AppendJSON(nil, &ev)
			if err != nil {
				t.Fatal(err)
			}
			var l map[string]any
			if err := json.Unmarshal(b, &l); err != nil {
				t.Fatal(err)
			}
			leaf := certs[0]
			sum := sha256.Sum256(leaf.Raw)
			want := map[string]string{
				"code":        tt.code.String(),
				"outcome":     "deny",
				"subject":     leaf.Subject.String(),
				"issuer":      leaf.Issuer.String(),
				"cert_serial": leaf.SerialNumber.Text(16),
				"fingerprint": hex.EncodeToString(sum[:]),
				"cn":          leaf.Subject.CommonName,
			}
			for k, v := range want {
				if l[k] != v {
					t.Errorf("%s = %v, want %q\n%s", k, l[k], v, b)
				}
			}
			if _, ok := l["kind"]; ok {
				t.Errorf("kind set for a certificate that was never classified: %s", b)
			}
		})
	}
	// No certificate presented: nothing to name.
	d := a.Authorize(context.Background(), []*x509.Certificate{})
	ev := policy.AuditEvent{Decision: d}
	b, _ := AppendJSON(nil, &ev)
	var l map[string]any
	json.Unmarshal(b, &l)
	if l["code"] != "no_certificate" || l["subject"] != nil || l["fingerprint"] != nil {
		t.Errorf("no certificate: %s", b)
	}
}
