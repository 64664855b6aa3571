package policy

import (
	"fmt"
	"strconv"
	"time"
)

// Config is the uncompiled policy: trust material, identity rules and access
// rules, as an admin writes them. The toml tags give the names used in
// gatehouse's config file; this package itself reads no TOML. Compile turns a
// Config into an immutable *Policy and reports every error with the key path
// that caused it (for example `policy[2].vpn.allow[1]`).
type Config struct {
	Trust    TrustConfig    `toml:"trust"`
	Identity IdentityConfig `toml:"identity"`
	Rules    []RuleConfig   `toml:"policy"`
}

// TrustConfig says which client certificates are trusted and what the server
// presents. File paths are read by Compile.
type TrustConfig struct {
	// ClientCA lists PEM files of the root CAs that issue client
	// certificates (employees and devices); a file may hold several, and
	// nothing but certificates. Required.
	ClientCA []string `toml:"client_ca"`
	// Intermediates lists PEM files of intermediate CAs the server adds to a
	// presented chain, so clients that send only their leaf still verify.
	Intermediates []string `toml:"intermediates"`
	// CRL lists CRL files: one DER CRL, or PEM holding one or more "X509
	// CRL" blocks (a bundle, e.g. one per CA), every one of which is used.
	// Each CRL must be signed by one of the configured CAs. They are read
	// by Compile (and on every reload). Like every PEM input, a file with a
	// block of another type, a malformed block or trailing data is refused.
	CRL []string `toml:"crl"`
	// Revocation is "require" (the default: every non-root certificate of a
	// chain must be covered by a current, verified CRL or OCSP answer, else
	// the decision is "revocation unknown" and denied), "best_effort" (check
	// what is configured, allow when nothing covers a CA) or "off".
	Revocation string `toml:"revocation"`
	// CASource lists, per CA, where to fetch its CRL and which OCSP
	// responder to ask. For a CA with several sources, the newest verified
	// CRL among its files and URLs is used.
	CASource []CASourceConfig `toml:"ca_source"`
	// CRLRefresh is how often CRLs are fetched from their URLs (default
	// "1h", at least "1s"); a CRL is also fetched again shortly before its
	// nextUpdate. A failed fetch keeps the last good CRL and is retried
	// sooner.
	CRLRefresh Duration `toml:"crl_refresh"`
	// OCSP is "off" (the default), "prefer" (ask the CA's ocsp_responder; if
	// it gives no good or revoked answer, use the CRL) or "require" (the
	// responder must answer good; anything else denies, whatever
	// Revocation says). Certificates of a CA without an ocsp_responder are
	// checked with CRLs in every mode.
	OCSP string `toml:"ocsp"`
	// OCSPTimeout bounds one OCSP exchange (default "3s").
	OCSPTimeout Duration `toml:"ocsp_timeout"`
	// OCSPNonce sends a random nonce with each OCSP request and refuses
	// responses that do not echo it. Off by default: responders that serve
	// pre-signed responses ignore nonces.
	OCSPNonce bool `toml:"ocsp_nonce"`
	// MinRSABits is the smallest RSA key accepted in a client certificate
	// and in every CA of its chain (default 2048; smaller values are
	// refused). ECDSA keys must be on P-256, P-384 or P-521; Ed25519 is
	// accepted; every other key is weak. A weak key denies with code
	// weak_key; a configured CA with a weak key is a configuration error.
	MinRSABits int `toml:"min_rsa_bits"`
	// ServerCert and ServerKey are the PEM certificate chain and key that
	// gatehouse presents to clients, in EAP-TLS and on the enrollment API.
	ServerCert string `toml:"server_cert"`
	ServerKey  string `toml:"server_key"`
	// TLSMinVersion is "1.2" (the default) or "1.3".
	TLSMinVersion string `toml:"tls_min_version"`
}

// IdentityConfig says how a certificate names its holder.
type IdentityConfig struct {
	// UserFrom is the ordered list of fields tried for a user's lookup key;
	// the first present wins. Fields: "upn", "email", "cn", "dns", "serial",
	// "fingerprint". Default: ["upn", "email", "cn"].
	UserFrom []string `toml:"user_from"`
	// Device rules mark a certificate as a device; the first that matches
	// wins. A certificate no rule marks is a user.
	Device []DeviceRuleConfig `toml:"device"`
}

// DeviceRuleConfig marks certificates as devices. Every condition set must
// hold; a rule with no condition is an error.
type DeviceRuleConfig struct {
	// Name names the device rule in decisions and logs; default device[N].
	Name string `toml:"name"`
	// IssuerCA is a PEM file of a CA (root or intermediate): certificates
	// whose verified chain contains it are devices.
	IssuerCA string `toml:"issuer_ca"`
	// OU matches a subject organizationalUnit exactly.
	OU string `toml:"ou"`
	// HasField requires an identity field to be present, e.g. "serial".
	HasField string `toml:"has_field"`
	// LookupBy is the ordered list of fields tried for the device's lookup
	// key. Default: ["serial", "cn"].
	LookupBy []string `toml:"lookup_by"`
}

// RuleConfig is one [[policy]] rule. Rules are tried in order; the first
// whose conditions all hold decides. Every rule names who it is for: groups,
// identity conditions, or everyone = true; a rule with none of them, or with
// an empty groups list, is a configuration error (it would silently match
// every directory entry).
type RuleConfig struct {
	// Name names the rule in decisions, logs and records; required and unique.
	Name string `toml:"name"`
	// Kind limits the rule to "user" or "device"; empty matches both.
	Kind string `toml:"kind"`
	// Groups: the entry must be in at least one, named by DN or by the value
	// of the group's first RDN (e.g. "engineering"; a group whose first RDN
	// is multi-valued, "cn=a+ou=b,…", can be named by DN only). DNs compare
	// parsed (RFC 4514): case-insensitively, escapes resolved, the values of
	// a multi-valued RDN in any order, "+" never equal to ",". An empty list
	// is an error.
	Groups []string `toml:"groups"`
	// Everyone makes a rule without group conditions explicit: it matches
	// every directory entry (of Kind, and meeting the Identity conditions if
	// any). It cannot be combined with Groups.
	Everyone bool `toml:"everyone"`
	// Identity conditions: field → accepted values, compared exactly
	// (case-insensitively for upn, email and dns); a value starting with "*"
	// matches that suffix, e.g. "*@example.com".
	Identity map[string][]string `toml:"identity"`
	// Deny makes a matching rule refuse access (with its name as the reason).
	Deny bool        `toml:"deny"`
	WiFi *WiFiConfig `toml:"wifi"`
	VPN  *VPNConfig  `toml:"vpn"`
}

// WiFiConfig is what an allowing rule gives a Wi-Fi client. A rule without a
// wifi table does not admit Wi-Fi clients.
type WiFiConfig struct {
	// VLAN is a number 1-4094 or a VLAN name: vlan = 10 and vlan = "10"
	// are the same.
	VLAN           Text     `toml:"vlan"`
	SessionTimeout Duration `toml:"session_timeout"`
	FilterID       Text     `toml:"filter_id"` // Filter-Id attribute; a name or a number
	Class          Text     `toml:"class"`     // Class attribute; a name or a number
}

// Text is a string that may also be written as an integer (vlan = 10 or
// vlan = "10"), for values a person writes either way.
type Text string

// UnmarshalTOML accepts a string or an integer.
func (t *Text) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		*t = Text(v)
	case int64:
		*t = Text(strconv.FormatInt(v, 10))
	default:
		return fmt.Errorf("want a string or an integer, not %T", v)
	}
	return nil
}

// VPNConfig is what an allowing rule gives a VPN client. A rule without a vpn
// table does not admit VPN clients.
type VPNConfig struct {
	// Allow entries read "PREFIX [PROTO[/PORTS]]...", e.g. "10.0.0.0/8",
	// "10.20.0.5 tcp/22,443", "10.0.0.53 udp/53 tcp/53", "10.1.0.0/16 icmp",
	// "10.2.0.0/16 tcp/8000-8100". A bare address is a /32 or /128.
	Allow []string `toml:"allow"`
	// DNS resolvers pushed to the client.
	DNS []string `toml:"dns"`
	// Routes sent to the client; default: the Allow prefixes.
	Routes []string `toml:"routes"`
	// FullTunnel routes all of the client's traffic through the VPN
	// (0.0.0.0/0, ::/0). It changes routes only: the packet filter still
	// admits just what Allow lists, so a rule that should reach everything
	// also lists "0.0.0.0/0" and "::/0" in Allow.
	FullTunnel bool `toml:"full_tunnel"`
}

// Duration is a time.Duration written as a string such as "8h" or "90s".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText formats the duration.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }
