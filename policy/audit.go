package policy

import (
	"net/netip"
	"time"
)

// AuditEvent is one access decision at one door, for the audit trail. The
// doors fill it in and hand it to an Auditor; the Decision inside it carries
// no secret (no key, no MSK, no password), so an event may be written out
// whole.
type AuditEvent struct {
	Time  time.Time
	Door  string // "wifi" or "vpn"
	Event string // "authenticate", "enroll", "revalidate"

	// Where the request came from: the RADIUS client (access point) name
	// and address for Wi-Fi, the enrollment API client address for VPN.
	NAS     string
	NASAddr netip.AddrPort
	Client  netip.AddrPort

	// Outcome: Decision.Allowed unless the door overrode it (e.g. an allowed
	// decision whose Access-Accept could not be built); Reason then says why.
	Allowed  bool
	Reason   string // the door's reason when it differs from Decision.Reason
	Decision Decision

	// Peer is the VPN peer's address (re-validation, enrollment).
	Peer netip.Addr

	TLSVersion uint16 // tls.Version* of the handshake, 0 if none
	Resumed    bool   // TLS session resumption
	Duration   time.Duration
}

// Auditor receives audit events. Audit must not block: an implementation
// that cannot keep up drops and counts. Both doors take an optional
// Auditor (nil = none).
type Auditor interface {
	Audit(AuditEvent)
}
