package revocation

import (
	"context"
	"crypto"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/policytest"
)

// ocspSetup is a PKI with a CRL server (alice good) and an OCSP responder
// for the intermediate, and a server standing for the URLs inside alice's
// certificate, which must never be asked.
type ocspSetup struct {
	*pki
	crl  *crlServer
	resp *responder
	aia  *httptest.Server
	aiaN atomic.Int64
}

func newOCSPSetup(t *testing.T) *ocspSetup {
	s := &ocspSetup{}
	s.aia = httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { s.aiaN.Add(1) }))
	t.Cleanup(func() {
		s.aia.Close()
		if n := s.aiaN.Load(); n != 0 {
			t.Errorf("the URLs in the client certificate got %d requests", n)
		}
	})
	s.pki = newPKI(t, s.aia.URL)
	s.crl = newCRLServer(t, s.inter.MustCRL(t))
	s.resp = newResponder(t, s.inter)
	return s
}

// checker compiles the setup with ocsp mode and nonce, fetches the CRL and
// returns the policy and checker.
func (s *ocspSetup) checker(t *testing.T, mode string, nonce bool) (*policy.Policy, *Checker) {
	t.Helper()
	cfg := s.config(s.crl.URL, s.resp.URL, mode)
	cfg.Trust.OCSPNonce = nonce
	cfg.Trust.OCSPTimeout = policy.Duration{Duration: 2 * time.Second}
	p := compile(t, cfg)
	chk := newChecker(t, Config{OCSPFailureHold: -1}, p)
	if err := chk.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p, chk
}

func (s *ocspSetup) setStatus(st int) {
	s.resp.set(func(r *responder) { r.status[serialHex(s.alice.Cert)] = st })
}

func TestOCSPStatuses(t *testing.T) {
	s := newOCSPSetup(t)
	for _, tt := range []struct {
		mode   string
		status int
		code   policy.Code
		want   string // status in the result
		source string
	}{
		{"prefer", ocsp.Good, policy.CodeAllowed, "good", "ocsp " + s.resp.URL},
		{"prefer", ocsp.Revoked, policy.CodeRevoked, "revoked", "ocsp " + s.resp.URL},
		{"prefer", ocsp.Unknown, policy.CodeAllowed, "good", "crl " + s.crl.URL}, // falls back to the CRL
		{"require", ocsp.Good, policy.CodeAllowed, "good", "ocsp " + s.resp.URL},
		{"require", ocsp.Revoked, policy.CodeRevoked, "revoked", "ocsp " + s.resp.URL},
		{"require", ocsp.Unknown, policy.CodeRevocationUnknown, "unknown", "ocsp " + s.resp.URL},
	} {
		t.Run(tt.mode+"/responder-says-"+map[int]string{0: "good", 1: "revoked", 2: "unknown"}[tt.status], func(t *testing.T) {
			s.setStatus(tt.status)
			p, chk := s.checker(t, tt.mode, false)
			d := s.verify(p, chk)
			wantRev(t, d, tt.code, tt.want, tt.source)
			if tt.status == ocsp.Unknown && tt.mode == "prefer" && !strings.Contains(d.Revocation[0].Detail, "responder does not know the certificate") {
				t.Fatalf("fallback detail %q", d.Revocation[0].Detail)
			}
			// The intermediate is not covered by OCSP: its CRL file answers.
			if len(d.Revocation) > 1 && !strings.HasPrefix(d.Revocation[1].Source, "crl file ") {
				t.Fatalf("intermediate %+v", d.Revocation[1])
			}
		})
	}
}

func TestOCSPResponderDown(t *testing.T) {
	s := newOCSPSetup(t)
	s.setStatus(ocsp.Good)
	s.resp.Close()
	for _, tt := range []struct {
		mode   string
		code   policy.Code
		status string
		source string
	}{
		{"prefer", policy.CodeAllowed, "good", "crl " + s.crl.URL},
		{"require", policy.CodeRevocationUnknown, "unknown", "ocsp " + s.resp.URL},
	} {
		p, chk := s.checker(t, tt.mode, false)
		d := s.verify(p, chk)
		wantRev(t, d, tt.code, tt.status, tt.source)
		if !strings.Contains(d.Revocation[0].Detail, "connect") {
			t.Errorf("%s: detail %q does not say why", tt.mode, d.Revocation[0].Detail)
		}
	}
	// Under best_effort too, "require" means the responder must answer.
	cfg := s.config(s.crl.URL, s.resp.URL, "require")
	cfg.Trust.Revocation = "best_effort"
	p := compile(t, cfg)
	wantRev(t, s.verify(p, newChecker(t, Config{}, p)), policy.CodeRevocationUnknown, "unknown", "ocsp")
}

func TestOCSPResponderTimeout(t *testing.T) {
	s := newOCSPSetup(t)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer slow.Close()
	defer close(release)
	cfg := s.config(s.crl.URL, slow.URL, "require")
	cfg.Trust.OCSPTimeout = policy.Duration{Duration: 100 * time.Millisecond}
	p := compile(t, cfg)
	start := time.Now()
	d := s.verify(p, newChecker(t, Config{}, p))
	wantRev(t, d, policy.CodeRevocationUnknown, "unknown", "ocsp")
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("timeout took %v", el)
	}
}

func TestOCSPSigners(t *testing.T) {
	s := newOCSPSetup(t)
	s.setStatus(ocsp.Revoked) // accepting a bad response would deny with "revoked"
	rogue := policytest.NewCA(t, "Rogue")
	subj := s.inter.Cert.Subject
	spoof := s.root.MustIntermediate(t, "spoof", policytest.CAOptions{Subject: &subj})
	delegate := s.inter.MustIssue(t, policytest.LeafOptions{CN: "OCSP Responder", EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}})
	noEKU := s.inter.MustIssue(t, policytest.LeafOptions{CN: "Not a Responder"})
	expiredDelegate := s.inter.MustIssue(t, policytest.LeafOptions{CN: "Old Responder", EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	rogueDelegate := rogue.MustIssue(t, policytest.LeafOptions{CN: "OCSP Responder", EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}})
	for _, tt := range []struct {
		name   string
		signer *x509.Certificate
		key    any
		embed  bool
		stale  bool
		ok     bool
		detail string
	}{
		{"CA itself", s.inter.Cert, s.inter.Key, false, false, true, ""},
		{"CA itself, embedded", s.inter.Cert, s.inter.Key, true, false, true, ""},
		{"delegated responder", delegate.Cert, delegate.Key, true, false, true, ""},
		{"wrong key", rogue.Cert, rogue.Key, false, false, false, "not signed by"},
		{"wrong key, embedded", rogue.Cert, rogue.Key, true, false, false, "not issued by"},
		{"same name, other key", spoof.Cert, spoof.Key, false, false, false, "not signed by"},
		{"delegate without OCSPSigning", noEKU.Cert, noEKU.Key, true, false, false, "lacks the OCSPSigning"},
		{"expired delegate", expiredDelegate.Cert, expiredDelegate.Key, true, false, false, "outside its validity"},
		{"delegate of another CA", rogueDelegate.Cert, rogueDelegate.Key, true, false, false, "not issued by"},
		{"stale response", s.inter.Cert, s.inter.Key, false, true, false, "stale"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s.resp.set(func(r *responder) {
				r.signer, r.key, r.embed, r.stale = tt.signer, tt.key.(crypto.Signer), tt.embed, tt.stale
			})
			p, chk := s.checker(t, "require", false)
			d := s.verify(p, chk)
			if tt.ok {
				wantRev(t, d, policy.CodeRevoked, "revoked", "ocsp")
				return
			}
			wantRev(t, d, policy.CodeRevocationUnknown, "unknown", "ocsp")
			if !strings.Contains(d.Revocation[0].Detail, tt.detail) {
				t.Fatalf("detail %q, want %q", d.Revocation[0].Detail, tt.detail)
			}
		})
	}
}

func TestOCSPNonce(t *testing.T) {
	s := newOCSPSetup(t)
	s.setStatus(ocsp.Good)
	for _, tt := range []struct {
		nonce  bool
		mode   string // what the responder does with a nonce
		ok     bool
		detail string
	}{
		{true, "echo", true, ""},
		{true, "none", false, "did not echo the nonce"},
		{true, "wrong", false, "nonce mismatch"},
		{false, "none", true, ""},
	} {
		s.resp.set(func(r *responder) { r.nonce = tt.mode })
		p, chk := s.checker(t, "require", tt.nonce)
		d := s.verify(p, chk)
		if tt.ok {
			wantRev(t, d, policy.CodeAllowed, "good", "ocsp")
			continue
		}
		wantRev(t, d, policy.CodeRevocationUnknown, "unknown", "ocsp")
		if !strings.Contains(d.Revocation[0].Detail, tt.detail) {
			t.Errorf("nonce %v, responder %s: detail %q", tt.nonce, tt.mode, d.Revocation[0].Detail)
		}
	}
}

func TestOCSPCache(t *testing.T) {
	s := newOCSPSetup(t)
	s.setStatus(ocsp.Good)
	p, chk := s.checker(t, "require", true)
	s.resp.set(func(r *responder) { r.nextTTL = time.Hour })
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if d := s.verify(p, chk); d.Code != policy.CodeAllowed {
				t.Errorf("%v %s", d.Code, d.Reason)
			}
		})
	}
	wg.Wait()
	if n := s.resp.hits.Load(); n != 1 {
		t.Fatalf("responder asked %d times for 20 concurrent decisions, want 1", n)
	}
	s.verify(p, chk)
	hits, misses := chk.ocsp.stats()
	if misses != 1 || hits == 0 {
		t.Fatalf("cache hits %d, misses %d", hits, misses)
	}
	// A revocation shows once the cached answer's nextUpdate has passed.
	s.setStatus(ocsp.Revoked)
	s.resp.set(func(r *responder) { r.nextTTL = time.Minute })
	chk2 := newChecker(t, Config{}, p)
	wantRev(t, s.verify(p, chk2), policy.CodeRevoked, "revoked", "ocsp")
	wantRev(t, s.verify(p, chk), policy.CodeAllowed, "good", "ocsp") // still cached
}

func TestOCSPFailureHold(t *testing.T) {
	s := newOCSPSetup(t)
	s.setStatus(ocsp.Good)
	s.resp.set(func(r *responder) { r.stale = true })
	cfg := s.config(s.crl.URL, s.resp.URL, "require")
	p := compile(t, cfg)
	chk := newChecker(t, Config{OCSPFailureHold: time.Hour}, p)
	for range 3 {
		wantRev(t, s.verify(p, chk), policy.CodeRevocationUnknown, "unknown", "ocsp")
	}
	if n := s.resp.hits.Load(); n != 1 {
		t.Fatalf("responder asked %d times, want 1 (failure held)", n)
	}
}

func TestOCSPCacheBounded(t *testing.T) {
	var c ocspCache
	c.init(16, time.Minute)
	now := time.Now()
	for i := range 100 {
		k := ocspKey{responder: "r"}
		k.cert[0], k.cert[1] = byte(i), byte(i>>8)
		f, _ := c.join(k)
		c.finish(k, f, policy.RevocationResult{Status: "good"}, time.Hour, now)
		if len(c.entries) > 16 {
			t.Fatalf("%d entries", len(c.entries))
		}
	}
}

// A caller that gives up does not spoil the answer for another waiting on
// the same exchange, and is not held against the responder.
func TestOCSPCallerGivesUp(t *testing.T) {
	s := newOCSPSetup(t)
	s.setStatus(ocsp.Good)
	var calls atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		time.Sleep(300 * time.Millisecond)
		s.resp.Config.Handler.ServeHTTP(w, r)
	}))
	defer slow.Close()
	cfg := s.config(s.crl.URL, slow.URL, "require")
	p := compile(t, cfg)
	chk := newChecker(t, Config{OCSPFailureHold: time.Hour}, p)
	q := policy.OCSPQuery{Cert: s.alice.Cert, Issuer: s.inter.Cert, Responder: slow.URL, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	follower := make(chan policy.RevocationResult, 1)
	go func() {
		time.Sleep(10 * time.Millisecond)
		follower <- chk.OCSP(context.Background(), q)
	}()
	if r := chk.OCSP(ctx, q); r.Status != "unknown" {
		t.Fatalf("impatient caller: %+v", r)
	}
	if r := <-follower; r.Status != "good" {
		t.Fatalf("patient caller: %+v", r)
	}
	if r := chk.OCSP(context.Background(), q); r.Status != "good" {
		t.Fatalf("after: %+v", r)
	}
}
