package policy

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"unicode/utf8"
)

var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidUPN            = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
	oidSerialNumber   = asn1.ObjectIdentifier{2, 5, 4, 5}
)

// IdentityOf extracts the names a leaf certificate carries. Kind, Field,
// Name and DeviceRule are left zero: they depend on the policy's identity
// rules. An error means the certificate's SAN extension is malformed.
func IdentityOf(leaf *x509.Certificate) (Identity, error) {
	sum := sha256.Sum256(leaf.Raw)
	id := Identity{
		Email:       leaf.EmailAddresses,
		CN:          leaf.Subject.CommonName,
		DNS:         leaf.DNSNames,
		OU:          leaf.Subject.OrganizationalUnit,
		Fingerprint: hex.EncodeToString(sum[:]),
		CertSerial:  leaf.SerialNumber.Text(16),
		Subject:     leaf.Subject.String(),
		Issuer:      leaf.Issuer.String(),
		NotAfter:    leaf.NotAfter,
	}
	for _, atv := range leaf.Subject.Names {
		if atv.Type.Equal(oidSerialNumber) {
			if s, ok := atv.Value.(string); ok {
				id.Serial = s
			}
		}
	}
	for _, ext := range leaf.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			upns, err := parseUPNs(ext.Value)
			if err != nil {
				return id, err
			}
			id.UPN = upns
		}
	}
	return id, nil
}

// parseUPNs returns the Microsoft UPNs in a SubjectAltName extension value:
// otherName entries of type 1.3.6.1.4.1.311.20.2.3 whose value is a
// UTF8String inside an explicit [0] tag. crypto/x509 skips otherName.
func parseUPNs(der []byte) ([]string, error) {
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil || len(rest) != 0 || !seq.IsCompound || seq.Tag != asn1.TagSequence || seq.Class != asn1.ClassUniversal {
		return nil, errors.New("policy: identity: malformed subjectAltName")
	}
	var upns []string
	b := seq.Bytes
	for len(b) > 0 {
		var gn asn1.RawValue
		if b, err = asn1.Unmarshal(b, &gn); err != nil {
			return nil, errors.New("policy: identity: malformed subjectAltName entry")
		}
		if gn.Class != asn1.ClassContextSpecific || gn.Tag != 0 || !gn.IsCompound {
			continue // not otherName
		}
		var typ asn1.ObjectIdentifier
		inner, err := asn1.Unmarshal(gn.Bytes, &typ)
		if err != nil {
			return nil, errors.New("policy: identity: malformed otherName")
		}
		if !typ.Equal(oidUPN) {
			continue
		}
		var explicit asn1.RawValue
		if _, err := asn1.Unmarshal(inner, &explicit); err != nil || explicit.Class != asn1.ClassContextSpecific || explicit.Tag != 0 {
			return nil, errors.New("policy: identity: malformed UPN otherName")
		}
		var val asn1.RawValue
		if _, err := asn1.Unmarshal(explicit.Bytes, &val); err != nil || val.Class != asn1.ClassUniversal || val.Tag != asn1.TagUTF8String || !utf8.Valid(val.Bytes) {
			return nil, errors.New("policy: identity: UPN is not a UTF8String")
		}
		upns = append(upns, string(val.Bytes))
	}
	return upns, nil
}

// field returns the first value of a named identity field.
func (id *Identity) field(name string) string {
	switch name {
	case "upn":
		return first(id.UPN)
	case "email":
		return first(id.Email)
	case "cn":
		return id.CN
	case "dns":
		return first(id.DNS)
	case "serial":
		return id.Serial
	case "fingerprint":
		return id.Fingerprint
	}
	return ""
}

// values returns every value of a named identity field.
func (id *Identity) values(name string) []string {
	switch name {
	case "upn":
		return id.UPN
	case "email":
		return id.Email
	case "dns":
		return id.DNS
	case "ou":
		return id.OU
	}
	if v := id.field(name); v != "" {
		return []string{v}
	}
	return nil
}

func first(s []string) string {
	if len(s) > 0 {
		return s[0]
	}
	return ""
}

// identityFields are the names a config may use for identity fields, with
// the aliases ARCHITECTURE.md's sketch uses.
var identityFields = map[string]string{
	"upn": "upn", "san_upn": "upn",
	"email": "email", "san_email": "email",
	"cn":  "cn",
	"dns": "dns", "san_dns": "dns",
	"serial":      "serial",
	"fingerprint": "fingerprint",
}

// lookupFields returns the map a Directory receives.
func (id *Identity) lookupFields() map[string]string {
	m := make(map[string]string, 7)
	m["id"] = id.Name
	for _, f := range [...]string{"upn", "email", "cn", "dns", "serial", "fingerprint"} {
		if v := id.field(f); v != "" {
			m[f] = v
		}
	}
	return m
}
