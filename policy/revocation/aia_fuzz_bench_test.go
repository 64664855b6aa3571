package revocation

import (
	"context"
	"crypto"
	"crypto/x509"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/policytest"
)

func TestAIAIgnored(t *testing.T) {
	s := newOCSPSetup(t)
	if len(s.alice.Cert.OCSPServer) == 0 || len(s.alice.Cert.CRLDistributionPoints) == 0 {
		t.Fatal("test certificate carries no AIA/CDP URLs")
	}
	s.setStatus(ocsp.Good)
	for _, mode := range []string{"prefer", "require"} {
		p, chk := s.checker(t, mode, false)
		wantRev(t, s.verify(p, chk), policy.CodeAllowed, "good", "ocsp "+s.resp.URL)
	}
	if s.resp.hits.Load() == 0 {
		t.Fatal("configured responder never asked")
	}
	if n := s.aiaN.Load(); n != 0 {
		t.Fatalf("the OCSP/CRL URLs inside the client certificate got %d requests", n)
	}
}

// fuzzSetup returns an issuer, a certificate of it, and responses about it.
func fuzzSetup(f *testing.F) (cert, issuer *x509.Certificate, seeds [][]byte) {
	ca := policytest.NewCA(f, "Fuzz CA")
	leaf := ca.MustIssue(f, policytest.LeafOptions{CN: "fuzz"})
	delegate := ca.MustIssue(f, policytest.LeafOptions{CN: "responder", EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}})
	now := time.Now()
	for _, st := range []int{ocsp.Good, ocsp.Revoked, ocsp.Unknown} {
		tmpl := ocsp.Response{Status: st, SerialNumber: leaf.Cert.SerialNumber, ThisUpdate: now, NextUpdate: now.Add(time.Hour), RevokedAt: now, IssuerHash: crypto.SHA256}
		der, err := ocsp.CreateResponse(ca.Cert, ca.Cert, tmpl, ca.Key)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, der, withNonce(f, der, []byte{4, 2, 1, 2}, ca.Key))
		tmpl.Certificate = delegate.Cert
		der, err = ocsp.CreateResponse(ca.Cert, delegate.Cert, tmpl, delegate.Key)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, der)
	}
	return leaf.Cert, ca.Cert, seeds
}

// FuzzVerifyResponse feeds arbitrary bytes to the OCSP response path: it
// must never panic, and must accept nothing that is not signed by the CA or
// its delegate (which random bytes cannot be).
func FuzzVerifyResponse(f *testing.F) {
	cert, issuer, seeds := fuzzSetup(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte{0x30, 0x03, 0x0a, 0x01, 0x00})
	now := time.Now()
	f.Fuzz(func(t *testing.T, der []byte) {
		for _, nonce := range [][]byte{nil, {1, 2}} {
			resp, err := verifyResponse(der, cert, issuer, nonce, now)
			if err == nil && (resp == nil || resp.SerialNumber.Cmp(cert.SerialNumber) != 0) {
				t.Fatalf("accepted a response about serial %v", resp)
			}
		}
	})
}

// BenchmarkOCSPCached measures an OCSP question answered from the cache.
func BenchmarkOCSPCached(b *testing.B) {
	k := newPKI(b, "")
	r := newResponder(b, k.inter)
	r.status[serialHex(k.alice.Cert)] = ocsp.Good
	p := compile(b, k.config("", r.URL, "require"))
	chk := newChecker(b, Config{}, p)
	q := policy.OCSPQuery{Cert: k.alice.Cert, Issuer: k.inter.Cert, Responder: r.URL, Timeout: time.Second}
	ctx := context.Background()
	if res := chk.OCSP(ctx, q); res.Status != "good" {
		b.Fatal(res)
	}
	b.ReportAllocs()
	for b.Loop() {
		if res := chk.OCSP(ctx, q); res.Status != "good" {
			b.Fatal(res)
		}
	}
	if n := r.hits.Load(); n != 1 {
		b.Fatalf("responder asked %d times", n)
	}
}

// BenchmarkVerifyOCSPCached is the whole trust step (chain, EKU, OCSP from
// the cache for the leaf, CRL file for the intermediate).
func BenchmarkVerifyOCSPCached(b *testing.B) {
	k := newPKI(b, "")
	r := newResponder(b, k.inter)
	r.status[serialHex(k.alice.Cert)] = ocsp.Good
	p := compile(b, k.config("", r.URL, "require"))
	chk := newChecker(b, Config{}, p)
	chain := []*x509.Certificate{k.alice.Cert}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := p.VerifyContext(ctx, chain, time.Now(), chk); d.Code != policy.CodeAllowed {
			b.Fatal(d.Reason)
		}
	}
}

// BenchmarkVerifyFetchedCRL is the trust step with the leaf checked against
// a fetched CRL.
func BenchmarkVerifyFetchedCRL(b *testing.B) {
	k := newPKI(b, "")
	srv := newCRLServer(b, k.inter.MustCRL(b))
	p := compile(b, k.config(srv.URL, "", ""))
	chk := newChecker(b, Config{}, p)
	if err := chk.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	chain := []*x509.Certificate{k.alice.Cert}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := p.VerifyContext(ctx, chain, time.Now(), chk); d.Code != policy.CodeAllowed {
			b.Fatal(d.Reason)
		}
	}
}
