package policy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	_ "crypto/md5" // registers MD5, to recognise MD5-signed certificates
	"crypto/rsa"
	_ "crypto/sha1" // registers SHA-1, to recognise SHA-1-signed certificates
	"crypto/x509"
	"fmt"
	"time"
)

// Key strength limits (TrustConfig.MinRSABits).
const (
	DefaultMinRSABits = 2048
	maxMinRSABits     = 16384
)

// compileKeyStrength sets t.minRSABits from c.
func compileKeyStrength(c *TrustConfig, t *trust, errs *fieldErrors) {
	t.minRSABits = c.MinRSABits
	switch {
	case c.MinRSABits == 0:
		t.minRSABits = DefaultMinRSABits
	case c.MinRSABits < DefaultMinRSABits:
		errs.add("trust.min_rsa_bits", fmt.Sprint(c.MinRSABits), fmt.Errorf("must be at least %d", DefaultMinRSABits))
	case c.MinRSABits > maxMinRSABits:
		errs.add("trust.min_rsa_bits", fmt.Sprint(c.MinRSABits), fmt.Errorf("must be at most %d", maxMinRSABits))
	}
}

// weakKey says why the public key of c is too weak, or "" when it is
// strong enough: RSA of at least minRSABits, ECDSA on P-256, P-384 or
// P-521, or Ed25519. Every other key type or curve is weak.
func weakKey(c *x509.Certificate, minRSABits int) string {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits {
			return fmt.Sprintf("RSA-%d key (at least %d bits required)", n, minRSABits)
		}
		return ""
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return ""
		}
		return fmt.Sprintf("ECDSA key on curve %s (P-256, P-384 or P-521 required)", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return ""
	case nil:
		return fmt.Sprintf("unsupported %s key", c.PublicKeyAlgorithm)
	default:
		return fmt.Sprintf("%T key (RSA, ECDSA P-256/P-384/P-521 or Ed25519 required)", k)
	}
}

// checkKeys denies a verified chain in which any certificate, leaf or CA,
// has a weak key.
func (t *trust) checkKeys(chain []*x509.Certificate) (Decision, bool) {
	for i, c := range chain {
		if why := weakKey(c, t.minRSABits); why != "" {
			what := "certificate"
			if i > 0 {
				what = "CA certificate"
			}
			return Decision{Code: CodeWeakKey, Reason: fmt.Sprintf("%s %q has a weak %s", what, c.Subject, why)}, false
		}
	}
	return Decision{}, true
}

// weakSignature reports whether alg is a signature algorithm that
// crypto/x509 refuses as insecure but that can still be recognised.
func weakSignature(alg x509.SignatureAlgorithm) (crypto.Hash, bool) {
	switch alg {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1:
		return crypto.SHA1, true
	case x509.MD5WithRSA:
		return crypto.MD5, true
	case x509.MD2WithRSA:
		return 0, true
	}
	return 0, false
}

// signedBy reports whether parent's key made c's signature; weak is set when
// that signature uses a weak hash (which crypto/x509 alone would refuse).
func signedBy(c, parent *x509.Certificate) (ok, weak bool) {
	h, isWeak := weakSignature(c.SignatureAlgorithm)
	if !isWeak {
		return c.CheckSignatureFrom(parent) == nil, false
	}
	if h == 0 || !h.Available() {
		return false, true
	}
	d := h.New()
	d.Write(c.RawTBSCertificate)
	digest := d.Sum(nil)
	switch k := parent.PublicKey.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, h, digest, c.Signature) == nil, true
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, digest, c.Signature), true
	}
	return false, true
}

// Bounds of the walk of diagnose: chain length, and signature checks (as
// crypto/x509 bounds its own), so that a client presenting many
// certificates with the same names cannot make it expensive.
const (
	maxDiagnoseDepth      = 10
	maxDiagnoseSignatures = 100
)

// diagnose finds the cause crypto/x509 hides behind "unknown authority":
// it walks from leaf up to a configured root, parent by parent (a parent is
// a presented, configured intermediate or root CA whose subject is the
// child's issuer and whose key made the child's signature, weak hashes
// included), and reports a certificate signed with a weak algorithm (SHA-1,
// MD5) or a CA outside its validity period on that path. ok is false when
// there is no such path: the chain is simply untrusted.
func (t *trust) diagnose(leaf *x509.Certificate, presented []*x509.Certificate, now time.Time) (d Decision, ok bool) {
	candidates := make([]*x509.Certificate, 0, len(presented)+len(t.cas))
	candidates = append(candidates, presented...)
	candidates = append(candidates, t.cas...)
	var weak, invalid *x509.Certificate
	checks := 0
	cur := leaf
	for depth := 0; ; depth++ {
		if t.isRoot(cur) {
			break
		}
		if depth == maxDiagnoseDepth {
			return Decision{}, false
		}
		var parent *x509.Certificate
		for _, c := range candidates {
			if c == cur || !c.IsCA || !bytes.Equal(cur.RawIssuer, c.RawSubject) {
				continue
			}
			if checks++; checks > maxDiagnoseSignatures {
				return Decision{}, false
			}
			if ok, isWeak := signedBy(cur, c); ok {
				parent = c
				if isWeak && weak == nil {
					weak = cur
				}
				break
			}
		}
		if parent == nil {
			return Decision{}, false
		}
		if invalid == nil && (now.Before(parent.NotBefore) || now.After(parent.NotAfter)) {
			invalid = parent
		}
		cur = parent
	}
	switch {
	case weak != nil:
		return Decision{Code: CodeWeakSignature, Reason: fmt.Sprintf("certificate %q is signed with %s, a weak algorithm refused for client certificates and CAs",
			weak.Subject, weak.SignatureAlgorithm)}, true
	case invalid != nil:
		return validityDecision(invalid, now, "CA certificate"), true
	}
	return Decision{}, false
}

func (t *trust) isRoot(c *x509.Certificate) bool {
	for _, r := range t.rootCerts {
		if r.Equal(c) {
			return true
		}
	}
	return false
}

// validityDecision says that c (a "certificate" or "CA certificate") is
// outside its validity period at now: not yet valid, or expired.
func validityDecision(c *x509.Certificate, now time.Time, what string) Decision {
	period := fmt.Sprintf("(%s to %s)", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	if now.Before(c.NotBefore) {
		return Decision{Code: CodeNotYetValid, Reason: fmt.Sprintf("%s %q is not valid yet %s", what, c.Subject, period)}
	}
	return Decision{Code: CodeExpired, Reason: fmt.Sprintf("%s %q has expired: outside its validity period %s", what, c.Subject, period)}
}
