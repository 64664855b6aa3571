package policytest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"slices"
	"testing"
	"time"
)

// OIDUPN is the Microsoft user principal name otherName type.
var OIDUPN = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// LeafOptions describes a leaf certificate. The zero value gives an ECDSA
// P-256 client certificate (EKU clientAuth) valid from an hour ago for a
// year, clipped to the issuer's validity.
type LeafOptions struct {
	CN           string
	OU           []string
	SerialNumber string     // subject serialNumber (a device serial), not the certificate serial
	Subject      *pkix.Name // full subject, overrides CN, OU, SerialNumber

	UPNs   []string // SAN otherName 1.3.6.1.4.1.311.20.2.3, UTF8String in [0] EXPLICIT
	Emails []string
	DNS    []string
	IPs    []net.IP
	URIs   []*url.URL

	NotBefore time.Time
	NotAfter  time.Time

	EKU      []x509.ExtKeyUsage // nil: clientAuth (serverAuth when IsServer)
	IsServer bool
	RSABits  int           // 0: ECDSA P-256
	Key      crypto.Signer // use this key instead of generating one
	Serial   *big.Int      // certificate serial; nil: random
	// SignatureAlgorithm the CA signs with; 0: the default for its key
	// (e.g. x509.SHA1WithRSA or x509.ECDSAWithSHA1 for a weak signature).
	SignatureAlgorithm x509.SignatureAlgorithm

	CRLDistributionPoints []string
	OCSPServer            []string
}

// Leaf is an issued end-entity certificate and its key.
type Leaf struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate // intermediates above Cert, excluding the root

	CertPEM  []byte // Cert only
	ChainPEM []byte // Cert then Chain
	KeyPEM   []byte // PKCS#8 "PRIVATE KEY"
}

// TLSCertificate returns the leaf and its intermediates for crypto/tls.
func (l *Leaf) TLSCertificate() tls.Certificate {
	c := tls.Certificate{Certificate: [][]byte{l.Cert.Raw}, PrivateKey: l.Key, Leaf: l.Cert}
	for _, ic := range l.Chain {
		c.Certificate = append(c.Certificate, ic.Raw)
	}
	return c
}

// Issue signs a leaf certificate described by o.
func (ca *CA) Issue(o LeafOptions) (*Leaf, error) {
	key := o.Key
	if key == nil {
		var err error
		if key, err = GenerateKey(o.RSABits); err != nil {
			return nil, err
		}
	}
	subject := pkix.Name{CommonName: o.CN, OrganizationalUnit: o.OU, SerialNumber: o.SerialNumber}
	if o.Subject != nil {
		subject = *o.Subject
	}
	notBefore, notAfter := validity(o.NotBefore, o.NotAfter, 1, ca.Cert.NotAfter)
	serial := o.Serial
	if serial == nil {
		var err error
		if serial, err = randomSerial(); err != nil {
			return nil, err
		}
	}
	eku := o.EKU
	if eku == nil {
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if o.IsServer {
			eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}
	}
	ku := x509.KeyUsageDigitalSignature
	if _, ok := key.Public().(*rsa.PublicKey); ok {
		ku |= x509.KeyUsageKeyEncipherment
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
		KeyUsage:              ku,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		SubjectKeyId:          skid,
		CRLDistributionPoints: o.CRLDistributionPoints,
		OCSPServer:            o.OCSPServer,
		SignatureAlgorithm:    o.SignatureAlgorithm,
	}
	san, err := SubjectAltName(o.UPNs, o.Emails, o.DNS, o.IPs, o.URIs)
	if err != nil {
		return nil, err
	}
	if san != nil {
		// RFC 5280 4.2.1.6: critical when the subject is empty.
		san.Critical = len(subject.ToRDNSequence()) == 0
		tmpl.ExtraExtensions = []pkix.Extension{*san}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("policytest: issue %q: %w", o.CN, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("policytest: issue %q: %w", o.CN, err)
	}
	keyPEM, err := KeyPEM(key)
	if err != nil {
		return nil, err
	}
	l := &Leaf{Cert: cert, Key: key, Chain: slices.Clone(ca.Chain), KeyPEM: keyPEM, CertPEM: CertPEM(cert)}
	l.ChainPEM = CertPEM(append([]*x509.Certificate{cert}, ca.Chain...)...)
	return l, nil
}

// MustIssue is Issue that fails t on error.
func (ca *CA) MustIssue(t testing.TB, o LeafOptions) *Leaf {
	t.Helper()
	l, err := ca.Issue(o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// SubjectAltName builds the subjectAltName extension (RFC 5280 4.2.1.6) by
// hand, because crypto/x509 cannot write otherName. Each UPN is encoded the
// Microsoft way:
//
//	[0] IMPLICIT SEQUENCE { OID 1.3.6.1.4.1.311.20.2.3, [0] EXPLICIT UTF8String }
//
// It returns nil when there are no names.
func SubjectAltName(upns, emails, dns []string, ips []net.IP, uris []*url.URL) (*pkix.Extension, error) {
	var names []asn1.RawValue
	for _, u := range upns {
		oid, err := asn1.Marshal(OIDUPN)
		if err != nil {
			return nil, fmt.Errorf("policytest: SAN: %w", err)
		}
		val, err := asn1.Marshal(asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(u)})
		if err != nil {
			return nil, fmt.Errorf("policytest: SAN: %w", err)
		}
		explicit, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: val})
		if err != nil {
			return nil, fmt.Errorf("policytest: SAN: %w", err)
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oid, explicit...)})
	}
	ia5 := func(tag int, s string) error {
		for i := 0; i < len(s); i++ {
			if s[i] > 0x7f {
				return fmt.Errorf("policytest: SAN: %q is not IA5", s)
			}
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, Bytes: []byte(s)})
		return nil
	}
	for _, e := range emails {
		if err := ia5(1, e); err != nil {
			return nil, err
		}
	}
	for _, d := range dns {
		if err := ia5(2, d); err != nil {
			return nil, err
		}
	}
	for _, u := range uris {
		if err := ia5(6, u.String()); err != nil {
			return nil, err
		}
	}
	for _, ip := range ips {
		b := ip.To4()
		if b == nil {
			b = ip.To16()
		}
		if b == nil {
			return nil, errors.New("policytest: SAN: bad IP address")
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: b})
	}
	if len(names) == 0 {
		return nil, nil
	}
	v, err := asn1.Marshal(names)
	if err != nil {
		return nil, fmt.Errorf("policytest: SAN: %w", err)
	}
	return &pkix.Extension{Id: oidSubjectAltName, Value: v}, nil
}
