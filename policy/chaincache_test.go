package policy

import (
	"context"
	"crypto/x509"
	"reflect"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

// TestChainCacheHit: a chain presented again is served from the cache (the
// same verified chain comes back) and still allowed.
func TestChainCacheHit(t *testing.T) {
	p := mustCompile(t, testConfig())
	alice := loadChain(t, "alice-chain.pem")
	d1 := p.Verify(alice)
	d2 := p.Verify(loadChain(t, "alice-chain.pem")) // same DER, new objects
	if d1.Code != CodeAllowed || d2.Code != CodeAllowed {
		t.Fatalf("%v %q / %v %q", d1.Code, d1.Reason, d2.Code, d2.Reason)
	}
	if &d1.Chain[0] != &d2.Chain[0] || p.trust.chains.len() != 1 {
		t.Fatalf("second verification not served from the cache (%d cached)", p.trust.chains.len())
	}
	// The presented issuing CA is not kept: the configured one is shared.
	if d2.Chain[1] != p.trust.intermediates[0] || d2.Chain[1] == alice[1] {
		t.Fatal("the cached chain holds the presented CA certificate, not the configured one")
	}
	want, _ := IdentityOf(alice[0])
	if !reflect.DeepEqual(d2.Identity, want) || d2.Revocation[0].Subject != want.Subject {
		t.Fatalf("identity on a cache hit: %+v\nwant %+v", d2.Identity, want)
	}
	if len(d2.Revocation) != 2 || d2.Revocation[0].Status != "good" || d2.Revocation[1].Status != "good" {
		t.Fatalf("revocation not checked on a cache hit: %+v", d2.Revocation)
	}
	// A revoked certificate's chain verifies (and is cached): it is
	// revoked every time.
	for range 2 {
		if d := p.Verify(loadChain(t, "carol.pem")); d.Code != CodeRevoked || p.trust.chains.len() != 2 {
			t.Fatalf("carol: %v, %d cached", d.Code, p.trust.chains.len())
		}
	}
	// Chains that do not verify are not cached.
	if d := p.Verify(loadChain(t, "mallory-wrongca-chain.pem")); d.Code == CodeAllowed || p.trust.chains.len() != 2 {
		t.Fatalf("mallory: %v, %d cached", d.Code, p.trust.chains.len())
	}
}

// TestChainCacheRevocation: revocation is checked at every login against
// the current state, never remembered with the chain: a cached chain is
// denied as soon as a fetched CRL lists it, and under a policy compiled
// with a CRL file listing it.
func TestChainCacheRevocation(t *testing.T) {
	ca := employeeInt(t)
	leaf := ca.MustIssue(t, policytest.LeafOptions{CN: "Cached Example"})
	chain := []*x509.Certificate{leaf.Cert}

	c := testConfig()
	c.Trust.CASource = []CASourceConfig{{CA: pki + "employee-int.pem", CRLURL: "http://crl.example/int.crl"}}
	p := mustCompile(t, c)
	file := p.trust.crls[caKey(t, "employee-int.pem")][0]
	if d := p.Verify(chain); d.Code != CodeAllowed || p.trust.chains.len() != 1 {
		t.Fatalf("before revocation: %v %q", d.Code, d.Reason)
	}
	fetched := &CRL{Source: "http://crl.example/int.crl (fetched x)", ThisUpdate: file.ThisUpdate.Add(time.Minute),
		NextUpdate: file.NextUpdate, revoked: map[string]time.Time{string(leaf.Cert.SerialNumber.Bytes()): time.Now()}}
	d := p.VerifyContext(context.Background(), chain, time.Now(), &fakeChecker{crl: fetched})
	if d.Code != CodeRevoked {
		t.Fatalf("cached chain after a fetched CRL lists it: %v %q", d.Code, d.Reason)
	}

	// CRL file swap: the new policy (a reload) denies it; its cache
	// starts empty.
	c.Trust.CRL[1] = writePEM(t, "employee-int.crl", policytest.CRLPEM(ca.MustCRL(t, leaf.Cert)))
	p2 := mustCompile(t, c)
	if p2.trust.chains.len() != 0 {
		t.Fatal("a new policy starts with cached chains")
	}
	if d := p2.Verify(chain); d.Code != CodeRevoked {
		t.Fatalf("after the CRL file swap: %v %q", d.Code, d.Reason)
	}
}

// TestChainCacheTrustSwap: after a trust change (a new policy) nothing
// verified under the old trust is served: a chain whose CA is no longer
// trusted is denied.
func TestChainCacheTrustSwap(t *testing.T) {
	p := mustCompile(t, testConfig())
	a := NewAuthorizer(p, &fakeDir{}, nil)
	alice := loadChain(t, "alice-chain.pem")
	if d := a.Authorize(context.Background(), alice); d.Code == CodePolicyUnavailable || p.trust.chains.len() != 1 {
		t.Fatalf("%v %q, %d cached", d.Code, d.Reason, p.trust.chains.len())
	}
	c := testConfig()
	c.Trust.ClientCA = []string{pki + "device-ca.pem"}
	c.Trust.Intermediates = nil
	c.Trust.CRL = []string{pki + "device-ca.crl"}
	c.Rules = c.Rules[:1]
	p2 := mustCompile(t, c)
	a.Swap(p2)
	if p2.trust.chains.len() != 0 {
		t.Fatal("the new policy starts with cached chains")
	}
	if d := a.Authorize(context.Background(), alice); d.Code != CodeUntrusted {
		t.Fatalf("after the trust swap: %v %q", d.Code, d.Reason)
	}
}

// TestChainCacheExpiry: a cached chain is checked for validity at every
// login's time: expired or not yet valid, it is denied and says why.
func TestChainCacheExpiry(t *testing.T) {
	ca := employeeInt(t)
	now := time.Now()
	leaf := ca.MustIssue(t, policytest.LeafOptions{CN: "Short Example", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	chain := []*x509.Certificate{leaf.Cert}
	p := mustCompile(t, testConfig())
	if d := p.VerifyAt(chain, now); d.Code != CodeAllowed || p.trust.chains.len() != 1 {
		t.Fatalf("%v %q", d.Code, d.Reason)
	}
	if d := p.VerifyAt(chain, now.Add(2*time.Hour)); d.Code != CodeExpired {
		t.Fatalf("expired while cached: %v %q", d.Code, d.Reason)
	}
	if d := p.VerifyAt(chain, now.Add(-2*time.Hour)); d.Code != CodeNotYetValid {
		t.Fatalf("before its validity: %v %q", d.Code, d.Reason)
	}
	if d := p.VerifyAt(chain, now.Add(30*time.Minute)); d.Code != CodeAllowed {
		t.Fatalf("valid again: %v %q", d.Code, d.Reason)
	}
	// The chain's validity is every certificate's: the intermediate's
	// NotAfter counts too.
	k := keyOf(chain)
	v := p.trust.chains.get(&k)
	if v == nil || !v.notAfter.Equal(leaf.Cert.NotAfter) || v.notBefore.Before(ca.Cert.NotBefore) {
		t.Fatalf("cached validity %+v", v)
	}
}

// TestChainCacheKey: the key is the exact chain presented, order included.
func TestChainCacheKey(t *testing.T) {
	leaf, inter := loadChain(t, "alice.pem")[0], loadChain(t, "employee-int.pem")[0]
	root := loadChain(t, "employee-root.pem")[0]
	a := []*x509.Certificate{leaf, inter, root}
	b := []*x509.Certificate{leaf, root, inter}
	if keyOf(a) == keyOf(b) || keyOf(a[:2]) == keyOf(a) || keyOf(a[:1]) == keyOf(a[:2]) {
		t.Fatal("different chains share a key")
	}
	if keyOf(a[:1]) != keyOf(loadChain(t, "alice.pem")) {
		t.Fatal("the same chain (parsed again) has another key")
	}
	p := mustCompile(t, testConfig())
	for _, ch := range [][]*x509.Certificate{a, b, a} {
		if d := p.Verify(ch); d.Code != CodeAllowed {
			t.Fatalf("%v %q", d.Code, d.Reason)
		}
	}
	if n := p.trust.chains.len(); n != 2 {
		t.Fatalf("%d chains cached, want 2", n)
	}
}

// TestChainCacheBounded: the cache never holds more than its bound; the
// oldest entry goes first.
func TestChainCacheBounded(t *testing.T) {
	c := newChainCache(3)
	chain := loadChain(t, "alice-chain.pem")
	keys := make([]chainKey, 10)
	for i := range keys {
		keys[i][0] = byte(i)
		c.put(&keys[i], chain)
		if n := c.len(); n != min(i+1, 3) {
			t.Fatalf("after %d puts: %d entries", i+1, n)
		}
	}
	for i, k := range keys {
		if got := c.get(&k) != nil; got != (i >= 7) {
			t.Errorf("key %d cached: %v", i, got)
		}
	}
	c.put(&keys[9], chain) // again: no growth, no eviction
	if c.len() != 3 || c.get(&keys[7]) == nil {
		t.Fatal("re-putting a cached key evicted another")
	}
}
