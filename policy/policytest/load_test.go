package policytest

import (
	"crypto/x509"
	"testing"
)

func TestLoadCAIssues(t *testing.T) {
	const pki = "../../testdata/pki/"
	root := MustLoadCA(t, pki+"employee-root.pem", pki+"employee-root.key")
	inter := MustLoadCA(t, pki+"employee-int.pem", pki+"employee-int.key", root.Cert)
	if len(root.Chain) != 0 || len(inter.Chain) != 2 || !inter.Chain[1].Equal(root.Cert) {
		t.Fatalf("chains: root %d, intermediate %d", len(root.Chain), len(inter.Chain))
	}
	l := inter.MustIssue(t, LeafOptions{CN: "Loaded", RSABits: 2048})
	if _, err := l.Cert.Verify(x509.VerifyOptions{Roots: root.Pool(), Intermediates: inter.Pool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("leaf of a loaded CA: %v", err)
	}
	weak := inter.MustIssue(t, LeafOptions{CN: "SHA-1", SignatureAlgorithm: x509.ECDSAWithSHA1})
	if weak.Cert.SignatureAlgorithm != x509.ECDSAWithSHA1 {
		t.Fatalf("signature algorithm %v", weak.Cert.SignatureAlgorithm)
	}
	ca := root.MustIntermediate(t, "SHA-1 CA", CAOptions{SignatureAlgorithm: x509.ECDSAWithSHA1})
	if ca.Cert.SignatureAlgorithm != x509.ECDSAWithSHA1 {
		t.Fatalf("CA signature algorithm %v", ca.Cert.SignatureAlgorithm)
	}
	if _, err := LoadCA(pki+"employee-int.pem", pki+"missing.key"); err == nil {
		t.Fatal("missing key loaded")
	}
}
