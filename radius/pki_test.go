package radius

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// The tests use the shared test PKI in testdata/pki (see its README).
const pkiDir = "../testdata/pki"

// testPKI is the set of certificates the tests use.
type testPKI struct {
	serverCA     *x509.Certificate   // issues the server certificate
	clientRoots  []*x509.Certificate // employee-root, device-ca
	clientInters []*x509.Certificate // employee-int: known to the server, so leaf-only clients work

	server     tls.Certificate
	alice      tls.Certificate // leaf only
	aliceChain tls.Certificate // leaf + employee-int
	thermostat tls.Certificate // device
	erin       tls.Certificate // long chain: 3 RSA-4096 intermediates
	mallory    tls.Certificate // CN "Alice Example" from a rogue root
	frank      tls.Certificate // trusted, no rule
	dave       tls.Certificate // expired
	noeku      tls.Certificate // no clientAuth EKU
}

var (
	pkiOnce   sync.Once
	sharedPKI *testPKI
	pkiErr    error
)

func getPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() { sharedPKI, pkiErr = loadPKI() })
	if pkiErr != nil {
		t.Fatalf("test PKI: %v", pkiErr)
	}
	return sharedPKI
}

func loadPKI() (*testPKI, error) {
	var err error
	cert := func(name string) *x509.Certificate {
		if err != nil {
			return nil
		}
		var b []byte
		if b, err = os.ReadFile(filepath.Join(pkiDir, name+".pem")); err != nil {
			return nil
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			err = os.ErrInvalid
			return nil
		}
		c, e := x509.ParseCertificate(blk.Bytes)
		err = e
		return c
	}
	pair := func(certFile, keyName string) tls.Certificate {
		if err != nil {
			return tls.Certificate{}
		}
		var c tls.Certificate
		c, err = tls.LoadX509KeyPair(filepath.Join(pkiDir, certFile+".pem"), filepath.Join(pkiDir, keyName+".key"))
		return c
	}
	p := &testPKI{
		serverCA:     cert("server-ca"),
		clientRoots:  []*x509.Certificate{cert("employee-root"), cert("device-ca")},
		clientInters: []*x509.Certificate{cert("employee-int")},
		server:       pair("server", "server"),
		alice:        pair("alice", "alice"),
		aliceChain:   pair("alice-chain", "alice"),
		thermostat:   pair("thermostat-0001-chain", "thermostat-0001"),
		erin:         pair("erin-chain", "erin"),
		mallory:      pair("mallory-wrongca-chain", "mallory-wrongca"),
		frank:        pair("frank-chain", "frank"),
		dave:         pair("dave-chain", "dave"),
		noeku:        pair("noeku-chain", "noeku"),
	}
	return p, err
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
	roots.AddCert(p.serverCA)
	c := &tls.Config{RootCAs: roots, ServerName: "gatehouse.test", MaxVersion: max, MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// fakeAuth stands in for policy.Authorizer: it verifies chains against the
// client roots (employee-int known to the server; no CRLs) and maps the
// leaf CN to a decision.
type fakeAuth struct {
	roots, inters *x509.CertPool
	calls         atomic.Int64

	mu    sync.Mutex // guards rules
	rules map[string]policy.WiFi
}

func newFakeAuth(p *testPKI) *fakeAuth {
	a := &fakeAuth{roots: x509.NewCertPool(), inters: x509.NewCertPool(), rules: map[string]policy.WiFi{
		"Alice Example":   {VLAN: "10", SessionTimeout: 8 * time.Hour, Class: "engineering"},
		"Erin Example":    {VLAN: "10", SessionTimeout: 8 * time.Hour},
		"Dave Example":    {VLAN: "10"},
		"Noeku Example":   {VLAN: "10"},
		"thermostat-0001": {VLAN: "30", FilterID: "iot"},
	}}
	for _, c := range p.clientRoots {
		a.roots.AddCert(c)
	}
	for _, c := range p.clientInters {
		a.inters.AddCert(c)
	}
	return a
}

func (a *fakeAuth) deleteRule(cn string) {
	a.mu.Lock()
	delete(a.rules, cn)
	a.mu.Unlock()
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
	w.Permitted = true
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
