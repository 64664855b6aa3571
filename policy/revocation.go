package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"
)

// OCSP modes (TrustConfig.OCSP).
const (
	OCSPOff     = "off"
	OCSPPrefer  = "prefer"
	OCSPRequire = "require"
)

// Defaults of the revocation settings.
const (
	DefaultCRLRefresh  = time.Hour
	DefaultOCSPTimeout = 3 * time.Second
	minCRLRefresh      = time.Second
)

// CASourceConfig is one [[trust.ca_source]]: where to ask about the
// certificates a CA issued. The URLs come from this configuration only,
// never from a client's certificate.
type CASourceConfig struct {
	// CA is the PEM file of the CA (one of trust.client_ca or
	// trust.intermediates) whose certificates this source covers.
	CA string `toml:"ca"`
	// CRLURL is an http or https URL the CA publishes its CRL at (PEM or
	// DER). The CRL is fetched in the background every trust.crl_refresh
	// and before its nextUpdate, verified against CA, and kept on disk.
	CRLURL string `toml:"crl_url"`
	// OCSPResponder is the http or https URL of the CA's OCSP responder,
	// used when trust.ocsp is "prefer" or "require".
	OCSPResponder string `toml:"ocsp_responder"`
}

// RevocationSource is a compiled [[trust.ca_source]].
type RevocationSource struct {
	CA            *x509.Certificate
	CRLURL        string // "" if none
	OCSPResponder string // "" if none
}

// RevocationSettings are the compiled network revocation settings that a
// RevocationChecker needs to do its background work.
type RevocationSettings struct {
	Sources     []RevocationSource
	CRLRefresh  time.Duration
	OCSP        string // OCSPOff, OCSPPrefer or OCSPRequire
	OCSPTimeout time.Duration
	OCSPNonce   bool
}

// RevocationChecker supplies what the trust step cannot know by itself: CRLs
// fetched from URLs and OCSP answers. Package policy/revocation implements
// it; attach one with (*Authorizer).SetRevocation or pass it to
// (*Policy).VerifyContext.
type RevocationChecker interface {
	// CRL returns the last good CRL fetched from url for certificates
	// issued by issuer, or nil when there is none (yet).
	CRL(issuer *x509.Certificate, url string) *CRL
	// OCSP asks q.Responder about q.Cert. A responder that does not answer
	// in time, or answers with anything but a verified response, yields
	// Status "unknown" with the reason in Detail.
	OCSP(ctx context.Context, q OCSPQuery) RevocationResult
}

// OCSPQuery is one OCSP question.
type OCSPQuery struct {
	Cert, Issuer *x509.Certificate
	Responder    string        // URL from trust.ca_source, never from Cert
	Timeout      time.Duration // for the whole exchange
	Nonce        bool          // send a nonce and require it echoed
}

// CRL is a certificate revocation list whose signature and issuer name have
// been verified against the CA that issued it. It is immutable.
type CRL struct {
	Source     string // where it came from, e.g. a file name or "http://… (fetched …)"
	Issuer     *x509.Certificate
	Number     *big.Int // nil when the CRL carries no number
	ThisUpdate time.Time
	NextUpdate time.Time // zero when absent
	Raw        []byte    // DER
	revoked    map[string]time.Time
}

// ParseCRL parses one CRL (DER or PEM "X509 CRL") and verifies that issuer
// signed it and is named as its issuer. It does not check the dates. PEM
// with anything but exactly one CRL block (see ReadPEM) is an error: a
// source names one CA, so a bundle there would hide CRLs.
func ParseCRL(b []byte, issuer *x509.Certificate, source string) (*CRL, error) {
	ders, err := crlDERs(b)
	if err != nil {
		return nil, err
	}
	if len(ders) != 1 {
		return nil, fmt.Errorf("holds %d CRLs, want one per source", len(ders))
	}
	l, err := x509.ParseRevocationList(ders[0])
	if err != nil {
		return nil, err
	}
	return newCRL(l, issuer, source)
}

func newCRL(l *x509.RevocationList, issuer *x509.Certificate, source string) (*CRL, error) {
	if !bytes.Equal(l.RawIssuer, issuer.RawSubject) {
		return nil, fmt.Errorf("CRL issuer %q is not %q", l.Issuer, issuer.Subject)
	}
	if err := l.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("CRL signature does not verify with %q: %w", issuer.Subject, err)
	}
	c := &CRL{Source: source, Issuer: issuer, Number: l.Number, ThisUpdate: l.ThisUpdate, NextUpdate: l.NextUpdate,
		Raw: l.Raw, revoked: make(map[string]time.Time, len(l.RevokedCertificateEntries))}
	for _, e := range l.RevokedCertificateEntries {
		c.revoked[string(e.SerialNumber.Bytes())] = e.RevocationTime
	}
	return c, nil
}

// Revoked reports whether the CRL lists serial, and when it was revoked.
func (c *CRL) Revoked(serial *big.Int) (time.Time, bool) {
	t, ok := c.revoked[string(serial.Bytes())]
	return t, ok
}

// Len is the number of certificates listed.
func (c *CRL) Len() int { return len(c.revoked) }

// Newer reports whether c supersedes old: a later thisUpdate, or the same
// thisUpdate and a larger CRL number.
func (c *CRL) Newer(old *CRL) bool {
	if old == nil {
		return true
	}
	if !c.ThisUpdate.Equal(old.ThisUpdate) {
		return c.ThisUpdate.After(old.ThisUpdate)
	}
	return c.Number != nil && old.Number != nil && c.Number.Cmp(old.Number) > 0
}

// caSources is the compiled revocation sources of one CA.
type caSources struct {
	crlURLs   []string
	responder string
}

// compileRevocation compiles the network revocation settings; t.cas must
// already hold the configured CAs.
func compileRevocation(c *TrustConfig, t *trust, errs *fieldErrors) {
	s := &t.settings
	s.CRLRefresh, s.OCSPTimeout, s.OCSPNonce, s.OCSP = c.CRLRefresh.Duration, c.OCSPTimeout.Duration, c.OCSPNonce, c.OCSP
	if s.CRLRefresh == 0 {
		s.CRLRefresh = DefaultCRLRefresh
	} else if s.CRLRefresh < minCRLRefresh {
		errs.add("trust.crl_refresh", c.CRLRefresh.String(), errors.New("must be at least 1s"))
	}
	if s.OCSPTimeout == 0 {
		s.OCSPTimeout = DefaultOCSPTimeout
	} else if s.OCSPTimeout < 0 {
		errs.add("trust.ocsp_timeout", c.OCSPTimeout.String(), errors.New("must be positive"))
	}
	switch c.OCSP {
	case "":
		s.OCSP = OCSPOff
	case OCSPOff, OCSPPrefer, OCSPRequire:
	default:
		errs.add("trust.ocsp", c.OCSP, errors.New(`must be "off", "prefer" or "require"`))
	}
	t.sources = map[[32]byte]*caSources{}
	responders := 0
	for i, sc := range c.CASource {
		key := fmt.Sprintf("trust.ca_source[%d]", i)
		var ca *x509.Certificate
		if sc.CA == "" {
			errs.add(key+".ca", "", errors.New("the CA file is required"))
		} else if cert, err := readOneCertificate(sc.CA); err != nil {
			errs.add(key+".ca", sc.CA, err)
		} else {
			for _, known := range t.cas {
				if known.Equal(cert) {
					ca = known
				}
			}
			if ca == nil {
				errs.add(key+".ca", sc.CA, errors.New("not among trust.client_ca or trust.intermediates"))
			}
		}
		if sc.CRLURL == "" && sc.OCSPResponder == "" {
			errs.add(key, "", errors.New("a CA source needs crl_url, ocsp_responder or both"))
		}
		if sc.CRLURL != "" {
			if err := checkHTTPURL(sc.CRLURL); err != nil {
				errs.add(key+".crl_url", sc.CRLURL, err)
			}
		}
		if sc.OCSPResponder != "" {
			if err := checkHTTPURL(sc.OCSPResponder); err != nil {
				errs.add(key+".ocsp_responder", sc.OCSPResponder, err)
			}
		}
		if ca == nil {
			continue
		}
		k := sha256.Sum256(ca.Raw)
		src := t.sources[k]
		if src == nil {
			src = &caSources{}
			t.sources[k] = src
		}
		if sc.CRLURL != "" {
			for _, u := range src.crlURLs {
				if u == sc.CRLURL {
					errs.add(key+".crl_url", sc.CRLURL, errors.New("listed twice for this CA"))
				}
			}
			src.crlURLs = append(src.crlURLs, sc.CRLURL)
		}
		if sc.OCSPResponder != "" {
			if src.responder != "" {
				errs.add(key+".ocsp_responder", sc.OCSPResponder, fmt.Errorf("this CA already has OCSP responder %q", src.responder))
			}
			src.responder = sc.OCSPResponder
			responders++
		}
		s.Sources = append(s.Sources, RevocationSource{CA: ca, CRLURL: sc.CRLURL, OCSPResponder: sc.OCSPResponder})
	}
	if s.OCSP == OCSPRequire && responders == 0 {
		errs.add("trust.ocsp", c.OCSP, errors.New("no trust.ca_source has an ocsp_responder"))
	}
	if s.OCSP != OCSPOff && t.revocation == RevocationOff {
		errs.add("trust.ocsp", c.OCSP, errors.New(`must be "off" when trust.revocation is "off"`))
	}
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("must be an http or https URL")
	}
	if u.Host == "" {
		return errors.New("URL has no host")
	}
	if u.User != nil {
		return errors.New("URL must not carry credentials")
	}
	return nil
}

// revocationOf decides the revocation status of cert, issued by issuer: OCSP
// first when configured, then the newest CRL among the files and the ones
// fetched by rc. strict is true when an "unknown" must deny whatever
// trust.revocation says (trust.ocsp = "require").
// subject is cert.Subject.String().
func (t *trust) revocationOf(ctx context.Context, cert *x509.Certificate, subject string, issuer *x509.Certificate, now time.Time, rc RevocationChecker) (r RevocationResult, strict bool) {
	k := sha256.Sum256(issuer.Raw)
	src := t.sources[k]
	var note string // why OCSP did not decide, when it was asked
	if src != nil && src.responder != "" && t.settings.OCSP != OCSPOff {
		if rc == nil {
			r = RevocationResult{Source: "ocsp " + src.responder, Status: "unknown", Detail: "no OCSP client attached"}
		} else {
			r = rc.OCSP(ctx, OCSPQuery{Cert: cert, Issuer: issuer, Responder: src.responder,
				Timeout: t.settings.OCSPTimeout, Nonce: t.settings.OCSPNonce})
		}
		r.Subject = subject
		if r.Status != "unknown" || t.settings.OCSP == OCSPRequire {
			return r, t.settings.OCSP == OCSPRequire
		}
		note = "OCSP " + src.responder + " gave no answer: " + r.Detail
	}
	r = t.crlStatus(cert, subject, issuer, k, src, now, rc)
	if note != "" {
		if r.Detail == "" {
			r.Detail = note
		} else {
			r.Detail = note + "; " + r.Detail
		}
	}
	return r, false
}

// crlStatus checks cert against the newest CRL of issuer (whose SHA-256 is k).
func (t *trust) crlStatus(cert *x509.Certificate, subject string, issuer *x509.Certificate, k [32]byte, src *caSources, now time.Time, rc RevocationChecker) RevocationResult {
	r := RevocationResult{Subject: subject, Status: "unknown"}
	var best *CRL
	for _, l := range t.crls[k] {
		if l.Newer(best) {
			best = l
		}
	}
	if src != nil && rc != nil {
		for _, u := range src.crlURLs {
			if l := rc.CRL(issuer, u); l != nil && l.Newer(best) {
				best = l
			}
		}
	}
	if best == nil {
		r.Detail = fmt.Sprintf("no CRL for issuer %q", issuer.Subject)
		if src != nil && len(src.crlURLs) > 0 {
			r.Detail = "no CRL fetched yet from " + src.crlURLs[0]
		}
		return r
	}
	r.Source = "crl " + best.Source
	if at, ok := best.Revoked(cert.SerialNumber); ok {
		// Listed by a verified CRL: revoked, even if the list is stale.
		r.Status, r.Detail = "revoked", "revoked at "+at.UTC().Format(time.RFC3339)
		return r
	}
	switch {
	case now.Before(best.ThisUpdate):
		r.Detail = "CRL is not valid yet (thisUpdate " + best.ThisUpdate.UTC().Format(time.RFC3339) + ")"
	case !best.NextUpdate.IsZero() && now.After(best.NextUpdate):
		r.Detail = "CRL expired (nextUpdate " + best.NextUpdate.UTC().Format(time.RFC3339) + ")"
	default:
		r.Status = "good"
	}
	return r
}
