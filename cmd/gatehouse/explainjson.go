package main

import (
	"crypto/x509"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// explainJSON is `gatehouse explain --json`: one decision, every step. The
// schema is documented in docs/cli.md; fields are only ever added.
type explainJSON struct {
	Certificate struct {
		Subject   string `json:"subject"`
		Issuer    string `json:"issuer"`
		Serial    string `json:"serial"` // lowercase hex
		NotBefore string `json:"not_before"`
		NotAfter  string `json:"not_after"`
	} `json:"certificate"`
	Trusted    bool             `json:"trusted"`
	Chain      []string         `json:"chain"` // common names, leaf first; empty when not trusted
	Revocation []explainRevoked `json:"revocation"`
	Identity   *explainIdentity `json:"identity,omitempty"` // once the chain is trusted
	DN         string           `json:"dn,omitempty"`
	Groups     []string         `json:"groups"`
	Rule       string           `json:"rule,omitempty"`
	Allowed    bool             `json:"allowed"`
	Code       string           `json:"code"` // e.g. "allowed", "no_rule", "revoked"
	Reason     string           `json:"reason"`
	WiFi       *explainWiFi     `json:"wifi"` // null: Wi-Fi not permitted
	VPN        *explainVPN      `json:"vpn"`  // null: VPN not permitted
	Warnings   []string         `json:"warnings"`
}

type explainRevoked struct {
	Subject string `json:"subject"`
	Status  string `json:"status"` // good, revoked, unknown
	Source  string `json:"source"`
	Detail  string `json:"detail,omitempty"`
}

type explainIdentity struct {
	Kind        string   `json:"kind"`
	Field       string   `json:"field"`
	Name        string   `json:"name"`
	DeviceRule  string   `json:"device_rule,omitempty"`
	UPN         []string `json:"upn,omitempty"`
	Email       []string `json:"email,omitempty"`
	CN          string   `json:"cn,omitempty"`
	DNS         []string `json:"dns,omitempty"`
	Serial      string   `json:"serial,omitempty"`
	OU          []string `json:"ou,omitempty"`
	Fingerprint string   `json:"fingerprint"`
}

type explainWiFi struct {
	VLAN           string `json:"vlan,omitempty"`
	SessionTimeout int64  `json:"session_timeout_seconds,omitempty"`
	FilterID       string `json:"filter_id,omitempty"`
	Class          string `json:"class,omitempty"`
}

type explainVPN struct {
	Allow      []string `json:"allow"` // "PREFIX [PROTO[/PORTS]]"
	DNS        []string `json:"dns"`
	FullTunnel bool     `json:"full_tunnel"`
}

func explainJSONOf(leaf *x509.Certificate, d policy.Decision) *explainJSON {
	out := &explainJSON{Chain: []string{}, Revocation: []explainRevoked{}, Groups: nonNil(d.Groups),
		DN: d.DN, Rule: d.Rule, Allowed: d.Allowed, Code: d.Code.String(), Reason: d.Reason}
	c := &out.Certificate
	c.Subject, c.Issuer, c.Serial = leaf.Subject.String(), leaf.Issuer.String(), leaf.SerialNumber.Text(16)
	c.NotBefore, c.NotAfter = leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339)
	out.Trusted = d.Chain != nil
	for _, cert := range d.Chain {
		out.Chain = append(out.Chain, cert.Subject.CommonName)
	}
	for _, r := range d.Revocation {
		out.Revocation = append(out.Revocation, explainRevoked{r.Subject, r.Status, r.Source, r.Detail})
	}
	if out.Trusted && !d.Code.TrustStep() && d.Identity.Fingerprint != "" {
		id := d.Identity
		out.Identity = &explainIdentity{Kind: id.Kind.String(), Field: id.Field, Name: id.Name, DeviceRule: id.DeviceRule,
			UPN: id.UPN, Email: id.Email, CN: id.CN, DNS: id.DNS, Serial: id.Serial, OU: id.OU, Fingerprint: id.Fingerprint}
	}
	if d.Allowed && d.WiFi.Permitted {
		w := d.WiFi
		out.WiFi = &explainWiFi{VLAN: w.VLAN, SessionTimeout: int64(w.SessionTimeout.Seconds()), FilterID: w.FilterID, Class: w.Class}
	}
	if d.Allowed && d.VPN != nil {
		v := &explainVPN{Allow: []string{}, DNS: []string{}, FullTunnel: d.VPN.FullTunnel}
		for _, a := range d.VPN.Allow {
			v.Allow = append(v.Allow, destString(a))
		}
		for _, a := range d.VPN.DNS {
			v.DNS = append(v.DNS, a.String())
		}
		out.VPN = v
	}
	return out
}
