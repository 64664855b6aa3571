package policy

import (
	"crypto/x509"
	"net/netip"
	"time"
)

// Code classifies a decision for metrics and scripts. The zero value is
// CodeAllowed only together with Decision.Allowed; every deny carries one of
// the other codes.
type Code uint8

// Decision codes.
const (
	CodeAllowed              Code = iota // a rule matched and allows access
	CodeNoCertificate                    // the client presented no certificate
	CodeUntrusted                        // the chain does not verify to a client CA
	CodeBadUsage                         // the leaf lacks the clientAuth EKU
	CodeExpired                          // a certificate's validity period has ended
	CodeRevoked                          // a certificate in the chain is revoked
	CodeRevocationUnknown                // revocation status could not be established
	CodeNoIdentity                       // no configured identity field is present
	CodeNotInDirectory                   // the identity has no directory entry
	CodeDirectoryError                   // the directory answered with an error (e.g. ambiguous)
	CodeDirectoryUnavailable             // the directory could not be reached in time
	CodeNoRule                           // no rule matched
	CodeRuleDenies                       // the matching rule says deny
	CodePolicyUnavailable                // no policy is loaded
	CodeDoorNotPermitted                 // the rule gives no access through this door (no wifi or vpn table)
	CodeWeakKey                          // a certificate of the chain has a key below the required strength
	CodeWeakSignature                    // a certificate of the chain is signed with a weak algorithm (SHA-1, MD5)
	CodeNotYetValid                      // a certificate's validity period has not begun
)

var codeNames = [...]string{
	CodeAllowed:              "allowed",
	CodeNoCertificate:        "no_certificate",
	CodeUntrusted:            "untrusted",
	CodeBadUsage:             "bad_key_usage",
	CodeExpired:              "expired",
	CodeRevoked:              "revoked",
	CodeRevocationUnknown:    "revocation_unknown",
	CodeNoIdentity:           "no_identity",
	CodeNotInDirectory:       "not_in_directory",
	CodeDirectoryError:       "directory_error",
	CodeDirectoryUnavailable: "directory_unavailable",
	CodeNoRule:               "no_rule",
	CodeRuleDenies:           "rule_denies",
	CodePolicyUnavailable:    "policy_unavailable",
	CodeDoorNotPermitted:     "door_not_permitted",
	CodeWeakKey:              "weak_key",
	CodeWeakSignature:        "weak_signature",
	CodeNotYetValid:          "not_yet_valid",
}

// TrustStep reports whether c is a denial of the trust step (chain,
// usage, validity, strength, revocation): the certificate was never
// classified nor looked up.
func (c Code) TrustStep() bool {
	switch c {
	case CodeNoCertificate, CodeUntrusted, CodeBadUsage, CodeExpired, CodeNotYetValid,
		CodeWeakKey, CodeWeakSignature, CodeRevoked, CodeRevocationUnknown:
		return true
	}
	return false
}

// String returns the code's stable snake_case name, suitable for metrics
// labels and logs.
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "unknown"
}

// Decision is the outcome of authorizing one certificate chain. It is a value:
// callers may keep and share it; its pointer and slice fields are never
// modified after the decision is made.
type Decision struct {
	Allowed bool
	Code    Code
	Rule    string // name of the rule that matched, "" if none
	Reason  string // human-readable, safe to log; never contains secrets

	// Trust results. Chain is the verified chain, leaf first, root last;
	// nil when verification failed.
	Chain      []*x509.Certificate
	Revocation []RevocationResult // one per certificate checked, leaf first

	// Identity of the presented leaf: its certificate fields whenever a
	// leaf was presented (denied at the trust step too); Kind, Field and
	// Name once the chain is trusted. Zero when no certificate was presented.
	Identity Identity

	// Directory results.
	DN     string   // the directory entry found, "" if none
	Groups []string // DNs of every group the entry belongs to, nested included

	// Access granted by the rule. Zero unless Allowed.
	WiFi WiFi
	VPN  *VPNAccess
}

// WiFi is what a Wi-Fi (RADIUS) access carries to the access point.
// Zero fields are not sent.
type WiFi struct {
	// Permitted is set when the rule admits Wi-Fi clients (it has a wifi
	// table); an allowing decision without it must be refused at the Wi-Fi
	// door, as one with a nil VPN is at the VPN door.
	Permitted bool

	VLAN           string        // Tunnel-Private-Group-Id: a VLAN number or name
	SessionTimeout time.Duration // Session-Timeout
	FilterID       string        // Filter-Id
	Class          string        // Class
}

// VPNAccess is what a VPN (WireGuard) access permits, compiled for the data
// path. A VPNAccess is immutable and shared by every decision of its rule.
type VPNAccess struct {
	Allow      []Destination // client → network traffic allowed; empty means none
	DNS        []netip.Addr  // resolvers pushed to the client
	Routes     []netip.Prefix
	FullTunnel bool // route everything (0.0.0.0/0, ::/0) through the tunnel
}

// Proto is an IP protocol number; ProtoAny matches every protocol.
type Proto uint8

// Protocols a destination may name.
const (
	ProtoAny    Proto = 0
	ProtoICMP   Proto = 1
	ProtoTCP    Proto = 6
	ProtoUDP    Proto = 17
	ProtoICMPv6 Proto = 58
)

// PortRange is an inclusive range of ports.
type PortRange struct{ First, Last uint16 }

// Destination is one allow entry: a prefix, optionally limited to a protocol
// and ports. With Proto == ProtoAny, Ports is empty and every protocol and port
// is allowed. With ProtoTCP or ProtoUDP and no Ports, every port is allowed.
// ProtoICMP also admits ICMPv6 for IPv6 prefixes.
type Destination struct {
	Prefix netip.Prefix
	Proto  Proto
	Ports  []PortRange
}

// Allows reports whether a packet to addr with protocol proto and destination
// port port is allowed by d. port is ignored for protocols without ports.
func (d *Destination) Allows(addr netip.Addr, proto Proto, port uint16) bool {
	if !d.Prefix.Contains(addr) {
		return false
	}
	switch d.Proto {
	case ProtoAny:
		return true
	case ProtoICMP:
		return proto == ProtoICMP || proto == ProtoICMPv6
	}
	if proto != d.Proto {
		return false
	}
	if len(d.Ports) == 0 {
		return true
	}
	for _, r := range d.Ports {
		if port >= r.First && port <= r.Last {
			return true
		}
	}
	return false
}
