package policy

import "time"

// Kind tells users from devices.
type Kind uint8

// Kinds of certificate holder.
const (
	KindUser Kind = iota
	KindDevice
)

func (k Kind) String() string {
	if k == KindDevice {
		return "device"
	}
	return "user"
}

// Identity holds the names a leaf certificate carries and the one chosen to
// look its holder up. The certificate's fields (UPN … NotAfter) describe the
// presented leaf whenever there was one, also in a decision denied at the
// trust step — then they are unverified claims, there for the audit trail;
// Kind, Field, Name and DeviceRule are set only once the chain is trusted.
type Identity struct {
	Kind       Kind
	Field      string // the field chosen for lookup: "upn", "email", "cn", "dns", "serial", "fingerprint"
	Name       string // its value
	DeviceRule string // name of the device rule that classified the certificate, if any

	UPN         []string // SAN otherName 1.3.6.1.4.1.311.20.2.3
	Email       []string // SAN rfc822Name
	CN          string   // subject commonName
	DNS         []string // SAN dNSName
	Serial      string   // subject serialNumber (device serial), not the certificate serial
	OU          []string // subject organizationalUnit
	Fingerprint string   // SHA-256 of the DER certificate, lowercase hex

	CertSerial string // certificate serial number, lowercase hex
	Subject    string // subject DN, RFC 2253 form
	Issuer     string // issuer DN, RFC 2253 form
	NotAfter   time.Time
}
