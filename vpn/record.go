package vpn

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// RecordVersion is the version of the peer record format this binary
// writes. It reads every version up to it; version 0 is the format before
// versions existed (no "version" key, the access grant in Go field names).
const RecordVersion = 1

// PeerRecord is one enrolled certificate and its WireGuard peer as a Store
// keeps it. Its types are the registry's own, not policy's, so a change to
// policy cannot make stored records unreadable; a change to this format
// bumps RecordVersion and keeps decoding the old ones.
type PeerRecord struct {
	Version     int          `json:"version"`
	Fingerprint string       `json:"fingerprint"` // SHA-256 of the leaf, lowercase hex
	CertSerial  string       `json:"cert_serial"`
	Identity    string       `json:"identity"`     // for display: the identity's name
	IdentityKey string       `json:"identity_key"` // kind/field/name: counts toward the per-identity limit
	NotAfter    time.Time    `json:"not_after"`
	Chain       [][]byte     `json:"chain"` // DER, leaf first, for re-validation
	PublicKey   Key          `json:"public_key"`
	Address     netip.Addr   `json:"address"`
	Address6    netip.Addr   `json:"address6,omitzero"`
	Rule        string       `json:"rule"`
	Access      *AccessGrant `json:"access"`
	Enrolled    time.Time    `json:"enrolled"`
	Updated     time.Time    `json:"updated"`
	Validated   time.Time    `json:"validated"`
	// Suspended is set while re-validation denies the peer: it is off the
	// device and the filter, its lease and this record stay, and it comes
	// back by itself when a later re-validation allows it.
	Suspended *Suspension `json:"suspended,omitempty"`
}

// Suspension says since when and why a peer is suspended.
type Suspension struct {
	Since  time.Time `json:"since"`
	Code   string    `json:"code"` // the decision code, e.g. "no_rule"
	Reason string    `json:"reason"`
}

// AccessGrant is the stored form of a rule's VPN access.
type AccessGrant struct {
	Allow      []GrantDestination `json:"allow"`
	DNS        []netip.Addr       `json:"dns,omitempty"`
	Routes     []netip.Prefix     `json:"routes,omitempty"`
	FullTunnel bool               `json:"full_tunnel,omitempty"`
}

// GrantDestination is one allowed destination: a prefix, an IP protocol
// number (0 = any) and inclusive port ranges ([first, last] pairs).
type GrantDestination struct {
	Prefix netip.Prefix `json:"prefix"`
	Proto  uint8        `json:"proto,omitempty"`
	Ports  [][2]uint16  `json:"ports,omitempty"`
}

func grantOf(a *policy.VPNAccess) *AccessGrant {
	if a == nil {
		return nil
	}
	g := &AccessGrant{DNS: a.DNS, Routes: a.Routes, FullTunnel: a.FullTunnel, Allow: make([]GrantDestination, len(a.Allow))}
	for i, d := range a.Allow {
		gd := GrantDestination{Prefix: d.Prefix, Proto: uint8(d.Proto)}
		for _, p := range d.Ports {
			gd.Ports = append(gd.Ports, [2]uint16{p.First, p.Last})
		}
		g.Allow[i] = gd
	}
	return g
}

func (g *AccessGrant) access() *policy.VPNAccess {
	if g == nil {
		return nil
	}
	a := &policy.VPNAccess{DNS: g.DNS, Routes: g.Routes, FullTunnel: g.FullTunnel, Allow: make([]policy.Destination, len(g.Allow))}
	for i, gd := range g.Allow {
		d := policy.Destination{Prefix: gd.Prefix, Proto: policy.Proto(gd.Proto)}
		for _, p := range gd.Ports {
			d.Ports = append(d.Ports, policy.PortRange{First: p[0], Last: p[1]})
		}
		a.Allow[i] = d
	}
	return a
}

// recordV0 is the format before versions, frozen: it must keep decoding
// what gatehouse wrote then (policy.VPNAccess marshalled with Go names).
type recordV0 struct {
	Fingerprint string     `json:"fingerprint"`
	CertSerial  string     `json:"cert_serial"`
	Identity    string     `json:"identity"`
	IdentityKey string     `json:"identity_key"`
	NotAfter    time.Time  `json:"not_after"`
	Chain       [][]byte   `json:"chain"`
	PublicKey   Key        `json:"public_key"`
	Address     netip.Addr `json:"address"`
	Address6    netip.Addr `json:"address6"`
	Rule        string     `json:"rule"`
	Access      *struct {
		Allow []struct {
			Prefix netip.Prefix
			Proto  uint8
			Ports  []struct{ First, Last uint16 }
		}
		DNS        []netip.Addr
		Routes     []netip.Prefix
		FullTunnel bool
	} `json:"access"`
	Enrolled  time.Time `json:"enrolled"`
	Updated   time.Time `json:"updated"`
	Validated time.Time `json:"validated"`
}

func (o *recordV0) upgrade() *PeerRecord {
	r := &PeerRecord{
		Version: RecordVersion, Fingerprint: o.Fingerprint, CertSerial: o.CertSerial, Identity: o.Identity,
		IdentityKey: o.IdentityKey, NotAfter: o.NotAfter, Chain: o.Chain, PublicKey: o.PublicKey,
		Address: o.Address, Address6: o.Address6, Rule: o.Rule,
		Enrolled: o.Enrolled, Updated: o.Updated, Validated: o.Validated,
	}
	if a := o.Access; a != nil {
		g := &AccessGrant{DNS: a.DNS, Routes: a.Routes, FullTunnel: a.FullTunnel, Allow: make([]GrantDestination, len(a.Allow))}
		for i, d := range a.Allow {
			gd := GrantDestination{Prefix: d.Prefix, Proto: d.Proto}
			for _, p := range d.Ports {
				gd.Ports = append(gd.Ports, [2]uint16{p.First, p.Last})
			}
			g.Allow[i] = gd
		}
		r.Access = g
	}
	return r
}

// EncodeRecord returns the stored form of r, at RecordVersion.
func EncodeRecord(r *PeerRecord) ([]byte, error) {
	c := *r
	c.Version = RecordVersion
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("vpn: encode peer record: %w", err)
	}
	return b, nil
}

// DecodeRecord reads a stored record of any version this binary knows.
// Unknown keys are ignored (a newer minor addition); a newer version is an
// error, as is a record without fingerprint or public key.
func DecodeRecord(b []byte) (*PeerRecord, error) {
	// Fast path, the current version: one pass over the text.
	if r := new(PeerRecord); json.Unmarshal(b, r) == nil && r.Version == RecordVersion {
		return checkRecord(r)
	}
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("vpn: decode peer record: %w", err)
	}
	var r *PeerRecord
	switch {
	case head.Version == 0:
		var o recordV0
		if err := json.Unmarshal(b, &o); err != nil {
			return nil, fmt.Errorf("vpn: decode peer record (version 0): %w", err)
		}
		r = o.upgrade()
	case head.Version <= RecordVersion:
		r = new(PeerRecord)
		if err := json.Unmarshal(b, r); err != nil {
			return nil, fmt.Errorf("vpn: decode peer record (version %d): %w", head.Version, err)
		}
	default:
		return nil, fmt.Errorf("vpn: decode peer record: format version %d is newer than this gatehouse reads (%d)", head.Version, RecordVersion)
	}
	return checkRecord(r)
}

func checkRecord(r *PeerRecord) (*PeerRecord, error) {
	if !validFingerprint(r.Fingerprint) || r.PublicKey.IsZero() || !r.Address.IsValid() {
		return nil, fmt.Errorf("vpn: decode peer record: no fingerprint, public key or address")
	}
	return r, nil
}
