package policytest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sync"
	"testing"
	"time"
)

// Organization is the subject O of every name minted from a plain string.
const Organization = "gatehouse test"

// CA is a certificate authority that can issue intermediates, leaves and
// CRLs. It is safe for concurrent use.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte // Cert, PEM "CERTIFICATE"

	// Chain holds the intermediates from this CA up to, not including, the
	// root: empty for a root, [self, parent, …] for an intermediate.
	Chain []*x509.Certificate

	mu      sync.Mutex // guards lastCRL
	lastCRL *big.Int   // number of the last CRL signed
}

// CAOptions adjusts a CA. The zero value gives an ECDSA P-256 CA valid from
// an hour ago for ten years (clipped to the parent's validity).
type CAOptions struct {
	RSABits   int           // 0: ECDSA P-256
	Key       crypto.Signer // use this key instead of generating one
	Subject   *pkix.Name    // full subject; nil: CN = name, O = Organization
	NotBefore time.Time
	NotAfter  time.Time
	// SignatureAlgorithm the parent signs with; 0: the default for its key
	// (e.g. x509.SHA1WithRSA or x509.ECDSAWithSHA1 for a weak signature).
	SignatureAlgorithm x509.SignatureAlgorithm
}

// NewRoot creates a self-signed root CA. At most one CAOptions is used.
func NewRoot(name string, opts ...CAOptions) (*CA, error) {
	return newCA(nil, name, opts)
}

// Intermediate creates a CA signed by ca. At most one CAOptions is used.
func (ca *CA) Intermediate(name string, opts ...CAOptions) (*CA, error) {
	return newCA(ca, name, opts)
}

func newCA(parent *CA, name string, opts []CAOptions) (*CA, error) {
	var o CAOptions
	switch len(opts) {
	case 0:
	case 1:
		o = opts[0]
	default:
		return nil, errors.New("policytest: CA: more than one CAOptions")
	}
	key := o.Key
	if key == nil {
		var err error
		if key, err = GenerateKey(o.RSABits); err != nil {
			return nil, err
		}
	}
	subject := pkix.Name{CommonName: name, Organization: []string{Organization}}
	if o.Subject != nil {
		subject = *o.Subject
	}
	var limit time.Time
	if parent != nil {
		limit = parent.Cert.NotAfter
	}
	notBefore, notAfter := validity(o.NotBefore, o.NotAfter, 10, limit)
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	skid, err := keyID(key.Public())
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          skid,
		SignatureAlgorithm:    o.SignatureAlgorithm,
	}
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		return nil, fmt.Errorf("policytest: CA %q: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("policytest: CA %q: %w", name, err)
	}
	ca := &CA{Cert: cert, Key: key, PEM: CertPEM(cert)}
	if parent != nil {
		ca.Chain = append([]*x509.Certificate{cert}, parent.Chain...)
	}
	return ca, nil
}

// KeyPEM returns the CA's private key as PEM PKCS#8 "PRIVATE KEY".
func (ca *CA) KeyPEM() ([]byte, error) { return KeyPEM(ca.Key) }

// Pool returns a pool holding only ca's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// CRL returns a DER CRL signed by ca that lists revoked. Each CRL from a CA
// carries a larger CRL number than the one before it.
func (ca *CA) CRL(revoked []*x509.Certificate, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	entries := make([]x509.RevocationListEntry, len(revoked))
	for i, c := range revoked {
		entries[i] = x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: thisUpdate}
	}
	ca.mu.Lock()
	n := big.NewInt(thisUpdate.UnixMilli())
	if ca.lastCRL != nil && n.Cmp(ca.lastCRL) <= 0 {
		n = new(big.Int).Add(ca.lastCRL, big.NewInt(1))
	}
	ca.lastCRL = n
	ca.mu.Unlock()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		RevokedCertificateEntries: entries,
		Number:                    n,
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
	}, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("policytest: CRL of %q: %w", ca.Cert.Subject.CommonName, err)
	}
	return der, nil
}

// NewCA is MustRoot: a fresh ECDSA root CA for a test.
func NewCA(t testing.TB, name string, opts ...CAOptions) *CA { return MustRoot(t, name, opts...) }

// MustRoot is NewRoot that fails t on error.
func MustRoot(t testing.TB, name string, opts ...CAOptions) *CA {
	t.Helper()
	ca, err := NewRoot(name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// MustIntermediate is Intermediate that fails t on error.
func (ca *CA) MustIntermediate(t testing.TB, name string, opts ...CAOptions) *CA {
	t.Helper()
	c, err := ca.Intermediate(name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// MustCRL returns a DER CRL valid from an hour ago for a day, listing
// revoked; it fails t on error.
func (ca *CA) MustCRL(t testing.TB, revoked ...*x509.Certificate) []byte {
	t.Helper()
	now := time.Now()
	der, err := ca.CRL(revoked, now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// GenerateKey returns an RSA key of bits bits, or ECDSA P-256 when bits is 0.
func GenerateKey(bits int) (crypto.Signer, error) {
	var (
		k   crypto.Signer
		err error
	)
	if bits == 0 {
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		k, err = rsa.GenerateKey(rand.Reader, bits)
	}
	if err != nil {
		return nil, fmt.Errorf("policytest: generate key: %w", err)
	}
	return k, nil
}

// CertPEM encodes certs as consecutive PEM "CERTIFICATE" blocks.
func CertPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM encodes key as PEM PKCS#8 "PRIVATE KEY", readable by OpenSSL.
func KeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("policytest: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// CRLPEM encodes a DER CRL as PEM "X509 CRL".
func CRLPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("policytest: serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil // never zero
}

// keyID is the RFC 5280 method 1 key identifier: SHA-1 of the public key bits.
func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("policytest: key id: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("policytest: key id: %w", err)
	}
	h := sha1.Sum(spki.PublicKey.Bytes)
	return h[:], nil
}

// validity fills in a zero notBefore (an hour ago) and a zero notAfter
// (years from now, cut off at limit when limit is set).
func validity(notBefore, notAfter time.Time, years int, limit time.Time) (time.Time, time.Time) {
	now := time.Now()
	if notBefore.IsZero() {
		notBefore = now.Add(-time.Hour)
	}
	if notAfter.IsZero() {
		notAfter = now.AddDate(years, 0, 0)
		if !limit.IsZero() && notAfter.After(limit) {
			notAfter = limit
		}
	}
	return notBefore, notAfter
}

// LoadCA reads a CA from its PEM certificate file and PKCS#8 key file, such
// as testdata/pki/employee-int.pem and .key, so that a test can issue more
// certificates from the committed test PKI without regenerating it. chain
// lists the CA's parents up to, not including, the root (nil for a root).
func LoadCA(certFile, keyFile string, chain ...*x509.Certificate) (*CA, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("policytest: %w", err)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("policytest: %w", err)
	}
	cblk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	if cblk == nil || kblk == nil {
		return nil, fmt.Errorf("policytest: %s or %s: no PEM block", certFile, keyFile)
	}
	cert, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("policytest: %s: %w", certFile, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("policytest: %s: %w", keyFile, err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("policytest: %s: not a signing key", keyFile)
	}
	ca := &CA{Cert: cert, Key: key, PEM: CertPEM(cert)}
	if cert.CheckSignatureFrom(cert) != nil || !bytes.Equal(cert.RawIssuer, cert.RawSubject) {
		ca.Chain = append([]*x509.Certificate{cert}, chain...)
	}
	return ca, nil
}

// MustLoadCA is LoadCA that fails t on error.
func MustLoadCA(t testing.TB, certFile, keyFile string, chain ...*x509.Certificate) *CA {
	t.Helper()
	ca, err := LoadCA(certFile, keyFile, chain...)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
