package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/gatehouse/gatehouse/policy"
)

// Limits of the OCSP exchange.
const (
	maxOCSPResponse = 1 << 20
	noNextUpdateTTL = time.Minute    // cache time of a response without nextUpdate
	maxOCSPCacheTTL = 24 * time.Hour // cap on any cache time
	nonceLen        = 16             // bytes
	ocspContentType = "application/ocsp-request"
)

var (
	oidNonce  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidBasic  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	hashByOID = map[string]crypto.Hash{
		"1.3.14.3.2.26":          crypto.SHA1,
		"2.16.840.1.101.3.4.2.1": crypto.SHA256,
		"2.16.840.1.101.3.4.2.2": crypto.SHA384,
		"2.16.840.1.101.3.4.2.3": crypto.SHA512,
	}
)

// RFC 6960 structures, as far as this package reads or writes them.
// golang.org/x/crypto/ocsp writes no request extensions (the nonce) and
// reads neither response extensions nor the issuer hashes of a CertID.
type (
	certID struct {
		HashAlgorithm pkix.AlgorithmIdentifier
		NameHash      []byte
		KeyHash       []byte
		SerialNumber  *big.Int
	}
	singleRequest struct {
		Cert certID
	}
	tbsRequest struct {
		Version    int `asn1:"explicit,tag:0,default:0,optional"`
		List       []singleRequest
		Extensions []pkix.Extension `asn1:"explicit,tag:2,optional"`
	}
	ocspRequest struct {
		TBS tbsRequest
	}
	ocspResponse struct {
		Status   asn1.Enumerated
		Response responseBytes `asn1:"explicit,tag:0,optional"`
	}
	responseBytes struct {
		Type     asn1.ObjectIdentifier
		Response []byte
	}
	basicResponse struct {
		TBS          responseData
		Algorithm    pkix.AlgorithmIdentifier
		Signature    asn1.BitString
		Certificates []asn1.RawValue `asn1:"explicit,tag:0,optional"`
	}
	responseData struct {
		Raw         asn1.RawContent
		Version     int `asn1:"optional,default:0,explicit,tag:0"`
		ResponderID asn1.RawValue
		ProducedAt  time.Time `asn1:"generalized"`
		Responses   []singleResponse
		Extensions  []pkix.Extension `asn1:"explicit,tag:1,optional"`
	}
	singleResponse struct {
		CertID     certID
		Status     asn1.RawValue
		ThisUpdate time.Time        `asn1:"generalized"`
		NextUpdate time.Time        `asn1:"generalized,explicit,tag:0,optional"`
		Extensions []pkix.Extension `asn1:"explicit,tag:1,optional"`
	}
)

// OCSP implements policy.RevocationChecker. Verified answers are cached
// until their nextUpdate; concurrent questions about one certificate share
// one exchange.
func (c *Checker) OCSP(ctx context.Context, q policy.OCSPQuery) policy.RevocationResult {
	k := ocspKey{cert: sha256.Sum256(q.Cert.Raw), responder: q.Responder}
	for {
		if r, ok := c.ocsp.get(k, time.Now()); ok {
			return r
		}
		f, leader := c.ocsp.join(k)
		if leader {
			r, ttl := c.exchange(ctx, q)
			c.ocsp.finish(k, f, r, ttl, time.Now())
			return r
		}
		select {
		case <-f.done:
			if !f.abandoned {
				return f.r
			}
			// The leader's caller went away; ask again under ours.
		case <-ctx.Done():
			return unknown(q.Responder, "gave up waiting: "+ctx.Err().Error())
		}
	}
}

func unknown(responder, detail string) policy.RevocationResult {
	return policy.RevocationResult{Source: "ocsp " + responder, Status: "unknown", Detail: detail}
}

// exchange asks the responder and verifies the answer. ttl is how long the
// result may be cached: <0 as a failure (for OCSPFailureHold), 0 not at all
// because the caller gave up before the responder had a chance.
func (c *Checker) exchange(ctx context.Context, q policy.OCSPQuery) (r policy.RevocationResult, ttl time.Duration) {
	timeout := q.Timeout
	if timeout <= 0 {
		timeout = policy.DefaultOCSPTimeout
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var nonce []byte
	if q.Nonce {
		nonce = make([]byte, nonceLen)
		rand.Read(nonce)
	}
	der, err := buildRequest(q.Cert, q.Issuer, nonce)
	if err != nil {
		return unknown(q.Responder, err.Error()), -1
	}
	body, err := c.post(ctx, q.Responder, der)
	if err != nil {
		if parent.Err() != nil {
			return unknown(q.Responder, err.Error()), 0 // our caller gave up: not the responder's fault
		}
		c.log.Warn("revocation: OCSP responder did not answer", "responder", q.Responder, "serial", q.Cert.SerialNumber.Text(16), "err", err)
		return unknown(q.Responder, err.Error()), -1
	}
	now := time.Now()
	resp, err := verifyResponse(body, q.Cert, q.Issuer, nonce, now)
	if err != nil {
		c.log.Warn("revocation: OCSP response refused", "responder", q.Responder, "serial", q.Cert.SerialNumber.Text(16), "err", err)
		return unknown(q.Responder, err.Error()), -1
	}
	r = policy.RevocationResult{Source: "ocsp " + q.Responder}
	switch resp.Status {
	case ocsp.Good:
		r.Status = "good"
	case ocsp.Revoked:
		r.Status, r.Detail = "revoked", "revoked at "+resp.RevokedAt.UTC().Format(time.RFC3339)
	default:
		r.Status, r.Detail = "unknown", "responder does not know the certificate"
	}
	ttl = noNextUpdateTTL
	if !resp.NextUpdate.IsZero() {
		ttl = min(resp.NextUpdate.Sub(now), maxOCSPCacheTTL)
	}
	return r, max(ttl, 1) // 0 means "abandoned"
}

func (c *Checker) post(ctx context.Context, url string, der []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(der))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ocspContentType)
	req.Header.Set("Accept", "application/ocsp-response")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxOCSPResponse+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxOCSPResponse {
		return nil, fmt.Errorf("response larger than %d bytes", maxOCSPResponse)
	}
	return b, nil
}

// issuerHashes returns the CertID hashes of issuer under h: of its subject
// name and of its public key (the BIT STRING contents).
func issuerHashes(issuer *x509.Certificate, h crypto.Hash) (name, key []byte, err error) {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil, nil, fmt.Errorf("issuer public key: %w", err)
	}
	if !h.Available() {
		return nil, nil, errors.New("hash unavailable")
	}
	hn := h.New()
	hn.Write(issuer.RawSubject)
	hk := h.New()
	hk.Write(spki.PublicKey.RightAlign())
	return hn.Sum(nil), hk.Sum(nil), nil
}

// buildRequest encodes an OCSP request for cert (SHA-1 CertID, as every
// responder understands), with a nonce extension when nonce is not nil.
func buildRequest(cert, issuer *x509.Certificate, nonce []byte) ([]byte, error) {
	name, key, err := issuerHashes(issuer, crypto.SHA1)
	if err != nil {
		return nil, err
	}
	r := ocspRequest{TBS: tbsRequest{List: []singleRequest{{Cert: certID{
		HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oidSHA1, Parameters: asn1.RawValue{Tag: asn1.TagNull}},
		NameHash:      name,
		KeyHash:       key,
		SerialNumber:  cert.SerialNumber,
	}}}}}
	if nonce != nil {
		v, err := asn1.Marshal(nonce)
		if err != nil {
			return nil, err
		}
		r.TBS.Extensions = []pkix.Extension{{Id: oidNonce, Value: v}}
	}
	return asn1.Marshal(r)
}

// verifyResponse parses an OCSP response about cert and checks, beyond what
// golang.org/x/crypto/ocsp checks: the CertID names issuer (name and key
// hashes), the signer is issuer itself or a responder certificate issued by
// it with the OCSPSigning EKU and valid now, the dates hold at now, no
// unknown critical extension, and the nonce is echoed when one was sent.
func verifyResponse(der []byte, cert, issuer *x509.Certificate, nonce []byte, now time.Time) (*ocsp.Response, error) {
	resp, err := ocsp.ParseResponseForCert(der, cert, nil)
	if err != nil {
		return nil, fmt.Errorf("bad OCSP response: %w", err)
	}
	// x/crypto parsed it, so these layers decode; the error checks guard
	// against the two parsers disagreeing.
	var outer ocspResponse
	if _, err := asn1.Unmarshal(der, &outer); err != nil || !outer.Response.Type.Equal(oidBasic) {
		return nil, errors.New("bad OCSP response: outer structure")
	}
	var basic basicResponse
	if _, err := asn1.Unmarshal(outer.Response.Response, &basic); err != nil {
		return nil, fmt.Errorf("bad OCSP response: %w", err)
	}
	var single *singleResponse
	for i := range basic.TBS.Responses {
		if basic.TBS.Responses[i].CertID.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			single = &basic.TBS.Responses[i]
			break
		}
	}
	if single == nil {
		return nil, errors.New("bad OCSP response: no answer about the certificate")
	}
	h, ok := hashByOID[single.CertID.HashAlgorithm.Algorithm.String()]
	if !ok {
		return nil, errors.New("bad OCSP response: unknown CertID hash")
	}
	name, key, err := issuerHashes(issuer, h)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(single.CertID.NameHash, name) || !bytes.Equal(single.CertID.KeyHash, key) {
		return nil, errors.New("OCSP response is about a certificate of another issuer")
	}
	if err := checkSigner(resp, issuer, now); err != nil {
		return nil, err
	}
	if resp.ThisUpdate.After(now.Add(clockSkew)) {
		return nil, fmt.Errorf("OCSP response not valid yet (thisUpdate %s)", resp.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !resp.NextUpdate.IsZero() && now.After(resp.NextUpdate) {
		return nil, fmt.Errorf("OCSP response is stale (nextUpdate %s)", resp.NextUpdate.UTC().Format(time.RFC3339))
	}
	var echoed []byte
	for _, e := range basic.TBS.Extensions {
		switch {
		case e.Id.Equal(oidNonce):
			echoed = e.Value
		case e.Critical:
			return nil, fmt.Errorf("OCSP response has unknown critical extension %s", e.Id)
		}
	}
	if nonce != nil {
		want, _ := asn1.Marshal(nonce)
		switch {
		case echoed == nil:
			return nil, errors.New("OCSP responder did not echo the nonce")
		case !bytes.Equal(echoed, want) && !bytes.Equal(echoed, nonce):
			return nil, errors.New("OCSP nonce mismatch")
		}
	}
	return resp, nil
}

// checkSigner verifies who signed resp: issuer itself, or a delegated
// responder certificate issued by issuer for OCSP signing.
func checkSigner(resp *ocsp.Response, issuer *x509.Certificate, now time.Time) error {
	rc := resp.Certificate
	if rc == nil || rc.Equal(issuer) {
		// Without an embedded certificate x/crypto checked nothing; with
		// issuer's own, it checked the signature already (again is cheap).
		if err := resp.CheckSignatureFrom(issuer); err != nil {
			return fmt.Errorf("OCSP response not signed by %q: %w", issuer.Subject, err)
		}
		return nil
	}
	// x/crypto verified the response signature with rc.
	if !bytes.Equal(rc.RawIssuer, issuer.RawSubject) {
		return fmt.Errorf("OCSP responder certificate %q is not issued by %q", rc.Subject, issuer.Subject)
	}
	if err := rc.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("OCSP responder certificate %q is not signed by %q: %w", rc.Subject, issuer.Subject, err)
	}
	delegated := false
	for _, u := range rc.ExtKeyUsage {
		delegated = delegated || u == x509.ExtKeyUsageOCSPSigning
	}
	if !delegated {
		return fmt.Errorf("OCSP responder certificate %q lacks the OCSPSigning extended key usage", rc.Subject)
	}
	if now.Before(rc.NotBefore) || now.After(rc.NotAfter) {
		return fmt.Errorf("OCSP responder certificate %q is outside its validity period", rc.Subject)
	}
	return nil
}
