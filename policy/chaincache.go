package policy

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"sync"
	"time"
)

// The verified-chain cache.
//
// Building and checking a chain costs a public-key signature check per
// certificate: most of the CPU of a resumed login, which does no other
// public-key work, and a fifth of a full one. Clients present the same
// chain login after login, so the trust step remembers the chains that
// verified, keyed by the exact chain presented (every certificate's DER,
// in order, leaf first). Only the path building and signature checks are
// remembered, never a decision:
//
//   - the cache belongs to one compiled policy (its trust step): a reload,
//     a trust change or a CRL file change compiles a new policy, whose
//     cache starts empty, so a swap can never serve an old verification;
//   - at every login the validity period of every certificate of the
//     cached chain is checked again at the login's time (a chain that
//     expired while cached goes through full verification, which denies
//     it and says why);
//   - revocation (CRL files, fetched CRLs, OCSP) is checked at every
//     login against the current state, as without the cache;
//   - identity, directory and rules run at every login (Decide).
//
// Only chains that passed (path, clientAuth, key strength) are kept; a
// denied chain is verified again each time. The cache holds at most
// maxCachedChains chains, the oldest going first.

// maxCachedChains bounds the verified-chain cache of one policy. An entry
// holds the parsed leaf certificate (CA certificates are shared with the
// configuration when they are configured ones), its identity and names:
// about 4 KB, so 32 MB at most.
const maxCachedChains = 8192

// chainKey identifies a presented chain: SHA-256 over every certificate's
// length and DER, in the order presented.
type chainKey [sha256.Size]byte

func keyOf(presented []*x509.Certificate) chainKey {
	h := sha256.New()
	var n [4]byte
	for _, c := range presented {
		binary.BigEndian.PutUint32(n[:], uint32(len(c.Raw)))
		h.Write(n[:])
		h.Write(c.Raw)
	}
	var k chainKey
	h.Sum(k[:0])
	return k
}

// verifiedChain is what the cache remembers of a chain that verified.
type verifiedChain struct {
	chain    []*x509.Certificate // leaf first, root last; never modified
	subjects []string            // chain[i].Subject.String(), for revocation results
	id       Identity            // IdentityOf(chain[0]); Kind, Field, Name zero
	idErr    error
	// The chain holds at times in [notBefore, notAfter]: the latest
	// NotBefore and the earliest NotAfter of its certificates.
	notBefore, notAfter time.Time
}

func (v *verifiedChain) validAt(now time.Time) bool {
	return !now.Before(v.notBefore) && !now.After(v.notAfter)
}

// chainCache is a bounded map of verified chains; safe for concurrent use.
type chainCache struct {
	max int

	mu    sync.Mutex // guards the fields below
	m     map[chainKey]*verifiedChain
	order []chainKey // insertion order, a ring of max slots
	next  int        // the slot of order the next insertion takes
}

func newChainCache(max int) *chainCache {
	return &chainCache{max: max, m: make(map[chainKey]*verifiedChain)}
}

// get returns the verified chain cached for k, nil if none.
func (c *chainCache) get(k *chainKey) *verifiedChain {
	c.mu.Lock()
	v := c.m[*k]
	c.mu.Unlock()
	return v
}

// put remembers chain (verified, leaf first) under k, evicting the oldest
// entry when the cache is full.
func (c *chainCache) put(k *chainKey, chain []*x509.Certificate) *verifiedChain {
	v := newVerifiedChain(chain)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[*k]; ok {
		c.m[*k] = v
		return v
	}
	if len(c.order) < c.max {
		c.order = append(c.order, *k)
	} else {
		delete(c.m, c.order[c.next])
		c.order[c.next] = *k
		c.next = (c.next + 1) % c.max
	}
	c.m[*k] = v
	return v
}

// newVerifiedChain computes what is remembered of chain: its validity
// period, subjects and leaf identity.
func newVerifiedChain(chain []*x509.Certificate) *verifiedChain {
	v := &verifiedChain{chain: chain, subjects: make([]string, len(chain))}
	v.id, v.idErr = IdentityOf(chain[0])
	for i, cert := range chain {
		v.subjects[i] = cert.Subject.String()
		if i == 0 || cert.NotBefore.After(v.notBefore) {
			v.notBefore = cert.NotBefore
		}
		if i == 0 || cert.NotAfter.Before(v.notAfter) {
			v.notAfter = cert.NotAfter
		}
	}
	return v
}

// len is the number of chains cached.
func (c *chainCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
