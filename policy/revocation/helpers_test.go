package revocation

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/policytest"
)

// pki is a root, an issuing intermediate and a user of it, written to files
// for policy.Compile.
type pki struct {
	root, inter *policytest.CA
	alice       *policytest.Leaf
	dir         string
	rootPEM     string // files
	interPEM    string
	rootCRL     string
}

func newPKI(t testing.TB, aia string) *pki {
	t.Helper()
	k := &pki{root: policytest.NewCA(t, "Test Root"), dir: t.TempDir()}
	k.inter = k.root.MustIntermediate(t, "Test Issuing CA")
	o := policytest.LeafOptions{CN: "Alice", Emails: []string{"alice@example.com"}}
	if aia != "" {
		// Where a hostile certificate would like to send us.
		o.OCSPServer = []string{aia + "/ocsp"}
		o.CRLDistributionPoints = []string{aia + "/crl"}
	}
	k.alice = k.inter.MustIssue(t, o)
	k.rootPEM = k.write(t, "root.pem", k.root.PEM)
	k.interPEM = k.write(t, "inter.pem", k.inter.PEM)
	k.rootCRL = k.write(t, "root.crl", policytest.CRLPEM(k.root.MustCRL(t)))
	return k
}

func (k *pki) write(t testing.TB, name string, b []byte) string {
	t.Helper()
	f := filepath.Join(k.dir, name)
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// config is a trust config over k: the root's CRL from a file, the
// intermediate's from crlURL and OCSP from responder (either may be "").
func (k *pki) config(crlURL, responder, ocspMode string) *policy.Config {
	return &policy.Config{Trust: policy.TrustConfig{
		ClientCA:      []string{k.rootPEM},
		Intermediates: []string{k.interPEM},
		CRL:           []string{k.rootCRL},
		OCSP:          ocspMode,
		CASource:      []policy.CASourceConfig{{CA: k.interPEM, CRLURL: crlURL, OCSPResponder: responder}},
	}}
}

func compile(t testing.TB, c *policy.Config) *policy.Policy {
	t.Helper()
	p, err := policy.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newChecker(t testing.TB, cfg Config, p *policy.Policy) *Checker {
	t.Helper()
	c, err := New(cfg, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// verify runs the trust step for alice's leaf.
func (k *pki) verify(p *policy.Policy, rc policy.RevocationChecker) policy.Decision {
	return p.VerifyContext(context.Background(), []*x509.Certificate{k.alice.Cert}, time.Now(), rc)
}

// crlServer serves one CRL; requests are counted.
type crlServer struct {
	*httptest.Server
	mu   sync.Mutex // guards body and down
	body []byte
	down bool
	hits atomic.Int64
}

func newCRLServer(t testing.TB, body []byte) *crlServer {
	s := &crlServer{body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		body, down := s.body, s.down
		s.mu.Unlock()
		if down {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *crlServer) set(body []byte) {
	s.mu.Lock()
	s.body = body
	s.mu.Unlock()
}

func (s *crlServer) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// responder is an in-process OCSP responder for one CA.
type responder struct {
	*httptest.Server
	t      testing.TB
	issuer *policytest.CA
	hits   atomic.Int64

	mu      sync.Mutex     // guards the fields below
	status  map[string]int // serial (hex) → ocsp.Good, ocsp.Revoked; others ocsp.Unknown
	signer  *x509.Certificate
	key     crypto.Signer
	embed   bool   // put signer in the response
	nonce   string // "echo" (default), "none" or "wrong"
	stale   bool   // nextUpdate in the past
	nextTTL time.Duration
}

func newResponder(t testing.TB, issuer *policytest.CA) *responder {
	r := &responder{t: t, issuer: issuer, status: map[string]int{}, signer: issuer.Cert, key: issuer.Key, nonce: "echo", nextTTL: time.Hour}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *responder) set(f func(r *responder)) {
	r.mu.Lock()
	f(r)
	r.mu.Unlock()
}

func (r *responder) serve(w http.ResponseWriter, req *http.Request) {
	r.hits.Add(1)
	body, _ := io.ReadAll(req.Body)
	var q ocspRequest
	if _, err := asn1.Unmarshal(body, &q); err != nil || len(q.TBS.List) != 1 {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var nonce []byte
	for _, e := range q.TBS.Extensions {
		if e.Id.Equal(oidNonce) {
			nonce = e.Value
		}
	}
	serial := q.TBS.List[0].Cert.SerialNumber
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.status[serial.Text(16)]
	if !ok {
		st = ocsp.Unknown
	}
	now := time.Now()
	tmpl := ocsp.Response{Status: st, SerialNumber: serial, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(r.nextTTL),
		RevokedAt: now.Add(-time.Hour), IssuerHash: crypto.SHA1}
	if r.stale {
		tmpl.ThisUpdate, tmpl.NextUpdate = now.Add(-2*time.Hour), now.Add(-time.Hour)
	}
	if r.embed {
		tmpl.Certificate = r.signer
	}
	der, err := ocsp.CreateResponse(r.issuer.Cert, r.signer, tmpl, r.key)
	if err != nil {
		r.t.Error(err)
		return
	}
	switch {
	case nonce != nil && r.nonce == "echo":
		der = withNonce(r.t, der, nonce, r.key)
	case nonce != nil && r.nonce == "wrong":
		wrong, _ := asn1.Marshal([]byte("0123456789abcdef"))
		der = withNonce(r.t, der, wrong, r.key)
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(der)
}

// withNonce adds a nonce response extension to an OCSP response made by
// ocsp.CreateResponse (which cannot) and signs it again with key.
func withNonce(t testing.TB, der, nonce []byte, key crypto.Signer) []byte {
	var outer ocspResponse
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatal(err)
	}
	var basic basicResponse
	if _, err := asn1.Unmarshal(outer.Response.Response, &basic); err != nil {
		t.Fatal(err)
	}
	basic.TBS.Raw = nil
	basic.TBS.Extensions = append(basic.TBS.Extensions, pkix.Extension{Id: oidNonce, Value: nonce})
	tbs, err := asn1.Marshal(basic.TBS)
	if err != nil {
		t.Fatal(err)
	}
	basic.TBS.Raw = tbs
	h := sha256.Sum256(tbs)
	sig, err := key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	basic.Signature = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	if outer.Response.Response, err = asn1.Marshal(basic); err != nil {
		t.Fatal(err)
	}
	out, err := asn1.Marshal(outer)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkNoLeak fails t if goroutines started after before do not exit.
func checkNoLeak(t testing.TB, before int) {
	t.Helper()
	var now int
	for range 100 {
		if now = runtime.NumGoroutine(); now <= before {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	buf := make([]byte, 1<<16)
	t.Fatalf("goroutines: %d before, %d after\n%s", before, now, buf[:runtime.Stack(buf, true)])
}

// waitFor polls cond for up to 10s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func serialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }
