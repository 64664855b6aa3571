package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Revocation modes.
const (
	RevocationRequire    = "require"
	RevocationBestEffort = "best_effort"
	RevocationOff        = "off"
)

// trust is the compiled trust step.
type trust struct {
	roots         *x509.CertPool
	intermediates []*x509.Certificate // configured, added to every presented chain
	cas           []*x509.Certificate // roots and intermediates, for CRL issuers and device rules
	rootCerts     []*x509.Certificate // the configured client CAs (roots)
	minRSABits    int                 // weaker RSA keys are refused, in leaves and CAs
	crls          map[[32]byte][]*CRL // CRL files, by SHA-256 of the issuing CA certificate
	revocation    string
	sources       map[[32]byte]*caSources // [[trust.ca_source]], by SHA-256 of the CA certificate
	settings      RevocationSettings
	chains        *chainCache // chains that verified (chaincache.go)
}

func compileTrust(c *TrustConfig, errs *fieldErrors) *trust {
	t := &trust{roots: x509.NewCertPool(), crls: map[[32]byte][]*CRL{}, revocation: c.Revocation, chains: newChainCache(maxCachedChains)}
	switch c.Revocation {
	case "":
		t.revocation = RevocationRequire
	case RevocationRequire, RevocationBestEffort, RevocationOff:
	default:
		errs.add("trust.revocation", c.Revocation, errors.New(`must be "require", "best_effort" or "off"`))
	}
	compileKeyStrength(c, t, errs)
	if len(c.ClientCA) == 0 {
		errs.add("trust.client_ca", "", errors.New("at least one client CA is required"))
	}
	for i, f := range c.ClientCA {
		certs, err := ReadCertificates(f)
		if err != nil {
			errs.add(fmt.Sprintf("trust.client_ca[%d]", i), f, err)
			continue
		}
		for _, cert := range certs {
			if !cert.IsCA {
				errs.add(fmt.Sprintf("trust.client_ca[%d]", i), f, fmt.Errorf("%q is not a CA certificate", cert.Subject))
				continue
			}
			if why := weakKey(cert, t.minRSABits); why != "" {
				errs.add(fmt.Sprintf("trust.client_ca[%d]", i), f, fmt.Errorf("%q has a weak %s", cert.Subject, why))
				continue
			}
			t.roots.AddCert(cert)
			t.rootCerts = append(t.rootCerts, cert)
			t.cas = append(t.cas, cert)
		}
	}
	for i, f := range c.Intermediates {
		certs, err := ReadCertificates(f)
		if err != nil {
			errs.add(fmt.Sprintf("trust.intermediates[%d]", i), f, err)
			continue
		}
		for _, cert := range certs {
			if why := weakKey(cert, t.minRSABits); why != "" {
				errs.add(fmt.Sprintf("trust.intermediates[%d]", i), f, fmt.Errorf("%q has a weak %s", cert.Subject, why))
				continue
			}
			if _, weak := weakSignature(cert.SignatureAlgorithm); weak {
				errs.add(fmt.Sprintf("trust.intermediates[%d]", i), f, fmt.Errorf("%q is signed with %s, a weak algorithm", cert.Subject, cert.SignatureAlgorithm))
				continue
			}
			t.intermediates = append(t.intermediates, cert)
			t.cas = append(t.cas, cert)
		}
	}
	for i, f := range c.CRL {
		key := fmt.Sprintf("trust.crl[%d]", i)
		lists, err := readCRLs(f)
		if err != nil {
			errs.add(key, f, err)
			continue
		}
		// A file may bundle several CRLs (PEM): every one is verified
		// against its CA and used; one that fails refuses the file.
		for j, l := range lists {
			which, source := "", "file "+f
			if len(lists) > 1 {
				which, source = fmt.Sprintf("CRL %d of %d: ", j+1, len(lists)), fmt.Sprintf("file %s (CRL %d of %d)", f, j+1, len(lists))
			}
			var issuer *x509.Certificate
			for _, ca := range t.cas {
				if bytes.Equal(l.RawIssuer, ca.RawSubject) && l.CheckSignatureFrom(ca) == nil {
					issuer = ca
					break
				}
			}
			if issuer == nil {
				errs.add(key, f, fmt.Errorf("%sCRL issued by %q is not signed by any configured CA", which, l.Issuer))
				continue
			}
			c, err := newCRL(l, issuer, source)
			if err != nil {
				errs.add(key, f, fmt.Errorf("%s%w", which, err))
				continue
			}
			k := sha256.Sum256(issuer.Raw)
			t.crls[k] = append(t.crls[k], c)
		}
	}
	compileRevocation(c, t, errs)
	return t
}

// verify runs chain verification, EKU, validity and revocation at now. rc,
// which may be nil, supplies fetched CRLs and OCSP answers. A chain that
// verified before is taken from the cache (chaincache.go) when every one
// of its certificates is valid at now; revocation is checked every time.
func (t *trust) verify(ctx context.Context, presented []*x509.Certificate, now time.Time, rc RevocationChecker) (Decision, *verifiedChain) {
	if len(presented) == 0 || presented[0] == nil {
		return Decision{Code: CodeNoCertificate, Reason: "no client certificate presented"}, nil
	}
	var v *verifiedChain
	if slices.Contains(presented, nil) {
		d, ok := t.verifyChain(presented, now)
		if !ok {
			return d, nil
		}
		v = newVerifiedChain(d.Chain)
	} else {
		k := keyOf(presented)
		if v = t.chains.get(&k); v == nil || !v.validAt(now) {
			d, ok := t.verifyChain(presented, now)
			if !ok {
				return d, nil
			}
			v = t.chains.put(&k, t.shareCAs(d.Chain))
		}
	}
	chain := v.chain
	d := Decision{Code: CodeAllowed, Chain: chain, Reason: "chain trusted"}
	if t.revocation == RevocationOff {
		return d, v
	}
	d.Revocation = make([]RevocationResult, 0, len(chain)-1)
	for i := 0; i < len(chain)-1; i++ {
		r, strict := t.revocationOf(ctx, chain[i], v.subjects[i], chain[i+1], now, rc)
		d.Revocation = append(d.Revocation, r)
		switch {
		case r.Status == "revoked":
			d.Code, d.Reason = CodeRevoked, fmt.Sprintf("certificate %q is revoked (%s)", r.Subject, r.Detail)
			return d, v
		case r.Status == "unknown" && (strict || t.revocation == RevocationRequire):
			d.Code, d.Reason = CodeRevocationUnknown, fmt.Sprintf("revocation status of %q unknown: %s", r.Subject, r.Detail)
			return d, v
		}
	}
	return d, v
}

// shareCAs returns chain with every CA certificate that is one of the
// configured ones replaced by the configured instance, so that a cached
// chain holds little more than its leaf.
func (t *trust) shareCAs(chain []*x509.Certificate) []*x509.Certificate {
	out := slices.Clone(chain)
	for i := 1; i < len(out); i++ {
		for _, ca := range t.cas {
			if ca == out[i] || ca.Equal(out[i]) {
				out[i] = ca
				break
			}
		}
	}
	return out
}

// verifyChain builds and checks a chain from the presented certificates
// (leaf first) to a client CA at now: signatures, validity, clientAuth, key
// strength. ok reports success, with the chain in d.Chain; otherwise d is
// the denial.
func (t *trust) verifyChain(presented []*x509.Certificate, now time.Time) (d Decision, ok bool) {
	leaf := presented[0]
	inter := x509.NewCertPool()
	for _, c := range presented[1:] {
		inter.AddCert(c)
	}
	for _, c := range t.intermediates {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{
		Roots:         t.roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return t.classify(leaf, presented[1:], opts, err), false
	}
	if !hasClientAuth(leaf) {
		return Decision{Code: CodeBadUsage, Reason: "certificate lacks the clientAuth extended key usage"}, false
	}
	chain := chains[0]
	if d, ok := t.checkKeys(chain); !ok {
		return d, false
	}
	return Decision{Chain: chain}, true
}

// classify turns a verification error into a decision that names its
// cause. crypto/x509 checks the leaf's validity first: an expired or not yet
// valid leaf is reported as such only if the chain would verify inside its
// validity period; otherwise the other cause is. Behind "unknown authority"
// it may hide a weak signature or a CA outside its validity: diagnose finds
// those.
func (t *trust) classify(leaf *x509.Certificate, presented []*x509.Certificate, opts x509.VerifyOptions, err error) Decision {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) {
		switch {
		case inv.Reason == x509.Expired && inv.Cert != nil && !inv.Cert.Equal(leaf):
			// A CA outside its validity: on a path to a trusted root?
			return t.untrusted(leaf, presented, opts.CurrentTime)
		case inv.Reason == x509.Expired:
			now := opts.CurrentTime
			o := opts
			o.CurrentTime = leaf.NotAfter.Add(-time.Second)
			if leaf.NotBefore.After(now) {
				o.CurrentTime = leaf.NotBefore.Add(time.Second)
			}
			_, err2 := leaf.Verify(o)
			var inv2 x509.CertificateInvalidError
			if err2 != nil && !(errors.As(err2, &inv2) && inv2.Reason == x509.Expired) {
				switch d := t.classify(leaf, presented, o, err2); d.Code {
				case CodeUntrusted, CodeWeakSignature, CodeBadUsage:
					return d
				}
			}
			return validityDecision(leaf, now, "certificate")
		case inv.Reason == x509.IncompatibleUsage:
			return Decision{Code: CodeBadUsage, Reason: "certificate lacks the clientAuth extended key usage"}
		}
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return t.untrusted(leaf, presented, opts.CurrentTime)
	}
	return Decision{Code: CodeUntrusted, Reason: "chain verification failed: " + err.Error()}
}

// untrusted is the decision for a leaf crypto/x509 found no trusted chain
// for: the hidden cause when diagnose finds one, else untrusted.
func (t *trust) untrusted(leaf *x509.Certificate, presented []*x509.Certificate, now time.Time) Decision {
	if d, ok := t.diagnose(leaf, presented, now); ok {
		return d
	}
	return Decision{Code: CodeUntrusted, Reason: fmt.Sprintf("certificate issued by %q does not chain to a trusted client CA", leaf.Issuer)}
}

func hasClientAuth(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth {
			return true
		}
	}
	return false
}
