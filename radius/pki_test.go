package radius

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// Until testdata/pki lands, tests mint their certificates here.

type testCA struct {
	cert   *x509.Certificate
	key    crypto.Signer
	parent *testCA
}

var serial atomic.Int64

func newKey(t testing.TB, rsaBits int) crypto.Signer {
	t.Helper()
	if rsaBits > 0 {
		k, err := rsa.GenerateKey(rand.Reader, rsaBits)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mint(t testing.TB, tmpl *x509.Certificate, parent *testCA, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl.SerialNumber = big.NewInt(serial.Add(1) + 1000)
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	pc, pk := tmpl, key
	if parent != nil {
		pc, pk = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pc, key.Public(), pk)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newTestCA makes a root (parent nil) or an intermediate CA.
func newTestCA(t testing.TB, name string, parent *testCA, rsaBits int) *testCA {
	key := newKey(t, rsaBits)
	c := mint(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, parent, key)
	return &testCA{cert: c, key: key, parent: parent}
}

// chain returns the CA's certificate and its parents' up to (excluding) the root.
func (ca *testCA) intermediates() []*x509.Certificate {
	var out []*x509.Certificate
	for c := ca; c != nil && c.parent != nil; c = c.parent {
		out = append(out, c.cert)
	}
	return out
}

// issue makes a leaf. withChain adds the intermediates to the TLS chain.
func (ca *testCA) issue(t testing.TB, cn string, server, withChain bool) tls.Certificate {
	key := newKey(t, 0)
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"gatehouse.test"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	leaf := mint(t, tmpl, ca, key)
	tc := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	if withChain {
		for _, c := range ca.intermediates() {
			tc.Certificate = append(tc.Certificate, c.Raw)
		}
	}
	return tc
}

// testPKI is the set of certificates the tests use.
type testPKI struct {
	root, inter, evil *testCA
	longChain         *testCA // three RSA-4096 intermediates under root
	server            tls.Certificate
	alice             tls.Certificate // leaf only (inter is known to the server)
	aliceChain        tls.Certificate // leaf + inter
	thermostat        tls.Certificate
	erin              tls.Certificate // long chain
	mallory           tls.Certificate // from an unknown root
	frank             tls.Certificate // trusted, no rule
}

var sharedPKI *testPKI

func getPKI(t testing.TB) *testPKI {
	if sharedPKI != nil {
		return sharedPKI
	}
	p := &testPKI{}
	p.root = newTestCA(t, "Test Employee Root", nil, 0)
	p.inter = newTestCA(t, "Test Employee Int", p.root, 0)
	p.evil = newTestCA(t, "Evil Root", nil, 0)
	lc := p.root
	for i := range 3 {
		lc = newTestCA(t, "Long Chain Int "+string(rune('A'+i)), lc, 4096)
	}
	p.longChain = lc
	p.server = p.root.issue(t, "gatehouse.test", true, false)
	p.alice = p.inter.issue(t, "alice", false, false)
	p.aliceChain = p.inter.issue(t, "alice", false, true)
	p.thermostat = p.inter.issue(t, "thermostat-0001", false, true)
	p.erin = p.longChain.issue(t, "erin", false, true)
	p.mallory = p.evil.issue(t, "alice", false, true)
	p.frank = p.inter.issue(t, "frank", false, true)
	sharedPKI = p
	return p
}

// serverTLS is what policy.Authorizer.ServerTLS would give.
func (p *testPKI) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{p.server},
		ClientAuth:   tls.RequireAnyClientCert,
	}
}

func (p *testPKI) clientTLS(cert *tls.Certificate, max uint16) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(p.root.cert)
	c := &tls.Config{RootCAs: roots, ServerName: "gatehouse.test", MaxVersion: max, MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// fakeAuth verifies chains against the test roots (with the employee
// intermediate known to the server) and maps the leaf CN to a decision.
type fakeAuth struct {
	roots, inters *x509.CertPool
	calls         atomic.Int64

	mu    sync.Mutex // guards rules
	rules map[string]policy.WiFi
}

func (a *fakeAuth) deleteRule(cn string) {
	a.mu.Lock()
	delete(a.rules, cn)
	a.mu.Unlock()
}

func newFakeAuth(p *testPKI) *fakeAuth {
	a := &fakeAuth{roots: x509.NewCertPool(), inters: x509.NewCertPool(), rules: map[string]policy.WiFi{
		"alice":           {VLAN: "10", SessionTimeout: 8 * time.Hour, Class: "engineering"},
		"erin":            {VLAN: "10", SessionTimeout: 8 * time.Hour},
		"thermostat-0001": {VLAN: "30", FilterID: "iot"},
	}}
	a.roots.AddCert(p.root.cert)
	a.inters.AddCert(p.inter.cert)
	return a
}

func (a *fakeAuth) Authorize(ctx context.Context, chain []*x509.Certificate) policy.Decision {
	a.calls.Add(1)
	if len(chain) == 0 {
		return policy.Decision{Code: policy.CodeNoCertificate, Reason: "no certificate"}
	}
	inters := a.inters.Clone()
	for _, c := range chain[1:] {
		inters.AddCert(c)
	}
	vc, err := chain[0].Verify(x509.VerifyOptions{Roots: a.roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return policy.Decision{Code: policy.CodeUntrusted, Reason: "chain does not verify"}
	}
	cn := chain[0].Subject.CommonName
	d := policy.Decision{Chain: vc[0], Identity: policy.Identity{Field: "cn", Name: cn, CN: cn}}
	a.mu.Lock()
	w, ok := a.rules[cn]
	a.mu.Unlock()
	if !ok {
		d.Code, d.Reason = policy.CodeNoRule, "no rule matched"
		return d
	}
	d.Allowed, d.Code, d.Rule, d.WiFi = true, policy.CodeAllowed, "test", w
	return d
}

// writePEM writes certificates (and a key) for external tools.
func writePEM(t testing.TB, dir, name string, certs [][]byte, key crypto.Signer) (certFile, keyFile string) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	certFile = filepath.Join(dir, name+".pem")
	if err := os.WriteFile(certFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if key != nil {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		keyFile = filepath.Join(dir, name+".key")
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}
