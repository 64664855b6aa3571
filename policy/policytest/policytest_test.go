package policytest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

// upns parses the SAN otherName UPNs of c, independently of SubjectAltName.
func upns(t testing.TB, c *x509.Certificate) []string {
	t.Helper()
	var out []string
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &names); err != nil || len(rest) != 0 {
			t.Fatalf("SAN: %v (rest %d)", err, len(rest))
		}
		for _, n := range names {
			if n.Class != asn1.ClassContextSpecific || n.Tag != 0 {
				continue
			}
			var on struct {
				ID    asn1.ObjectIdentifier
				Value asn1.RawValue // [0] EXPLICIT
			}
			// otherName is [0] IMPLICIT SEQUENCE: re-tag as SEQUENCE to parse.
			if _, err := asn1.UnmarshalWithParams(n.FullBytes, &on, "tag:0"); err != nil {
				t.Fatalf("otherName: %v", err)
			}
			if !on.ID.Equal(OIDUPN) {
				continue
			}
			if on.Value.Class != asn1.ClassContextSpecific || on.Value.Tag != 0 || !on.Value.IsCompound {
				t.Fatalf("UPN wrapper class %d tag %d, want [0] EXPLICIT", on.Value.Class, on.Value.Tag)
			}
			var v asn1.RawValue
			if rest, err := asn1.Unmarshal(on.Value.Bytes, &v); err != nil || len(rest) != 0 {
				t.Fatalf("UPN value: %v", err)
			}
			if v.Class != asn1.ClassUniversal || v.Tag != asn1.TagUTF8String {
				t.Fatalf("UPN value class %d tag %d, want UTF8String", v.Class, v.Tag)
			}
			out = append(out, string(v.Bytes))
		}
	}
	return out
}

func TestUPNRoundTrip(t *testing.T) {
	root := NewCA(t, "root")
	l := root.MustIssue(t, LeafOptions{
		CN:     "Alice",
		UPNs:   []string{"alice@corp.example.com", "ålice@corp.example.com"},
		Emails: []string{"alice@example.com"},
		DNS:    []string{"alice.example.com"},
		IPs:    []net.IP{net.ParseIP("192.0.2.1"), net.ParseIP("2001:db8::1")},
	})
	if got, want := upns(t, l.Cert), []string{"alice@corp.example.com", "ålice@corp.example.com"}; !slices.Equal(got, want) {
		t.Errorf("UPNs = %q, want %q", got, want)
	}
	c := l.Cert
	if !slices.Equal(c.EmailAddresses, []string{"alice@example.com"}) || !slices.Equal(c.DNSNames, []string{"alice.example.com"}) {
		t.Errorf("emails %q dns %q", c.EmailAddresses, c.DNSNames)
	}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(net.ParseIP("192.0.2.1")) || !c.IPAddresses[1].Equal(net.ParseIP("2001:db8::1")) {
		t.Errorf("IPs %v", c.IPAddresses)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("EKU %v", c.ExtKeyUsage)
	}
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSubjectAltName) && e.Critical {
			t.Error("SAN critical with a non-empty subject")
		}
	}
}

func TestSANCriticalWhenSubjectEmpty(t *testing.T) {
	l := NewCA(t, "root").MustIssue(t, LeafOptions{UPNs: []string{"x@y"}})
	for _, e := range l.Cert.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			if !e.Critical {
				t.Error("SAN not critical with an empty subject")
			}
			return
		}
	}
	t.Error("no SAN")
}

func TestChainVerifies(t *testing.T) {
	root := NewCA(t, "root")
	i1 := root.MustIntermediate(t, "i1")
	i2 := i1.MustIntermediate(t, "i2", CAOptions{RSABits: 2048})
	for _, tc := range []struct {
		name string
		o    LeafOptions
		eku  x509.ExtKeyUsage
	}{
		{"client", LeafOptions{CN: "c", SerialNumber: "TH-1", OU: []string{"devices"}}, x509.ExtKeyUsageClientAuth},
		{"rsa client", LeafOptions{CN: "r", RSABits: 2048}, x509.ExtKeyUsageClientAuth},
		{"server", LeafOptions{CN: "s", IsServer: true, DNS: []string{"gatehouse.test"}}, x509.ExtKeyUsageServerAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := i2.MustIssue(t, tc.o)
			if len(l.Chain) != 2 || l.Chain[0] != i2.Cert || l.Chain[1] != i1.Cert {
				t.Fatalf("chain %v", l.Chain)
			}
			inter := x509.NewCertPool()
			rest := l.ChainPEM
			n := 0
			for {
				var b *pem.Block
				if b, rest = pem.Decode(rest); b == nil {
					break
				}
				c, err := x509.ParseCertificate(b.Bytes)
				if err != nil {
					t.Fatal(err)
				}
				if n > 0 {
					inter.AddCert(c)
				}
				n++
			}
			if n != 3 {
				t.Fatalf("ChainPEM holds %d certificates, want 3", n)
			}
			if _, err := l.Cert.Verify(x509.VerifyOptions{Roots: root.Pool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{tc.eku}}); err != nil {
				t.Fatal(err)
			}
			if tc.o.SerialNumber != "" && l.Cert.Subject.SerialNumber != tc.o.SerialNumber {
				t.Errorf("subject serial %q", l.Cert.Subject.SerialNumber)
			}
			if _, err := tls.X509KeyPair(l.ChainPEM, l.KeyPEM); err != nil {
				t.Fatalf("X509KeyPair: %v", err)
			}
			tc := l.TLSCertificate()
			if len(tc.Certificate) != 3 {
				t.Errorf("TLSCertificate has %d certificates", len(tc.Certificate))
			}
		})
	}
}

func TestCRL(t *testing.T) {
	ca := NewCA(t, "root").MustIntermediate(t, "int")
	bad := ca.MustIssue(t, LeafOptions{CN: "bad"})
	good := ca.MustIssue(t, LeafOptions{CN: "good"})
	der := ca.MustCRL(t, bad.Cert)
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(bad.Cert.SerialNumber) != 0 {
		t.Fatalf("entries %v", crl.RevokedCertificateEntries)
	}
	if crl.RevokedCertificateEntries[0].SerialNumber.Cmp(good.Cert.SerialNumber) == 0 {
		t.Fatal("good revoked")
	}
	other := NewCA(t, "other")
	if err := crl.CheckSignatureFrom(other.Cert); err == nil {
		t.Fatal("CRL verified with the wrong CA")
	}
	now := time.Now()
	der2, err := ca.CRL(nil, now.Add(-2*time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	crl2, err := x509.ParseRevocationList(der2)
	if err != nil {
		t.Fatal(err)
	}
	if crl2.Number.Cmp(crl.Number) <= 0 {
		t.Errorf("CRL number %v not above %v", crl2.Number, crl.Number)
	}
	if b, _ := pem.Decode(CRLPEM(der)); b == nil || b.Type != "X509 CRL" {
		t.Error("CRLPEM")
	}
}

func TestSpoofedIssuerFails(t *testing.T) {
	root := NewCA(t, "root")
	real := root.MustIntermediate(t, "int")
	fakeRoot := NewCA(t, "", CAOptions{Subject: &root.Cert.Subject})
	spoof := fakeRoot.MustIntermediate(t, "", CAOptions{Subject: &real.Cert.Subject})
	l := spoof.MustIssue(t, LeafOptions{CN: "mallory"})
	inter := x509.NewCertPool()
	inter.AddCert(spoof.Cert)
	inter.AddCert(real.Cert)
	_, err := l.Cert.Verify(x509.VerifyOptions{Roots: root.Pool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if !errors.As(err, new(x509.UnknownAuthorityError)) {
		t.Fatalf("err = %v, want UnknownAuthorityError", err)
	}
}

func TestTooManyOptions(t *testing.T) {
	if _, err := NewRoot("x", CAOptions{}, CAOptions{}); err == nil {
		t.Fatal("no error")
	}
}
