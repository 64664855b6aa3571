package policy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// FieldError is one configuration error: the key path that holds the bad
// value, the value (omitted when empty; never a secret), and what is wrong.
type FieldError struct {
	Key   string // e.g. "policy[2].vpn.allow[1]"
	Value string
	Err   error
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return e.Key + ": " + e.Err.Error()
	}
	return fmt.Sprintf("%s: %q: %v", e.Key, e.Value, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

type fieldErrors []error

func (f *fieldErrors) add(key, value string, err error) {
	*f = append(*f, &FieldError{Key: key, Value: value, Err: err})
}

// Policy is a compiled, immutable Config. It is safe for concurrent use.
type Policy struct {
	trust     *trust
	identity  identityRules
	rules     []*rule
	serverTLS *tls.Config // nil when no server certificate is configured
	summary   Summary

	groups  sync.Map     // group DN string → entryGroup; see groupKey
	ngroups atomic.Int64 // entries added to groups
}

// Summary describes a compiled policy for `gatehouse check`.
type Summary struct {
	ClientCAs      []string // subjects
	Intermediates  []string
	CRLs           int // CRLs read from files (each CRL of a bundle counts)
	Revocation     string
	MinRSABits     int    // smallest RSA key accepted in a chain
	CRLURLs        int    // CRL URLs of [[trust.ca_source]]
	OCSP           string // off, prefer or require
	OCSPResponders int
	Rules          []string // names, in order
	ServerCert     string   // subject of the server certificate, "" if none
}

// Revocation returns the compiled network revocation settings, for the
// RevocationChecker that serves this policy.
func (p *Policy) Revocation() RevocationSettings {
	s := p.trust.settings
	s.Sources = slices.Clone(s.Sources)
	return s
}

// Summary returns a description of the policy.
func (p *Policy) Summary() Summary { return p.summary }

// Compile validates cfg, reads the files it names and builds an immutable
// Policy. All errors are reported together (errors.Join of *FieldError).
func Compile(cfg *Config) (*Policy, error) {
	var errs fieldErrors
	p := &Policy{}
	p.trust = compileTrust(&cfg.Trust, &errs)
	p.identity = compileIdentity(&cfg.Identity, p.trust, &errs)
	names := map[string]int{}
	for i := range cfg.Rules {
		r := compileRule(i, &cfg.Rules[i], &errs)
		if r == nil {
			continue
		}
		if j, dup := names[r.name]; dup {
			errs.add(fmt.Sprintf("policy[%d].name", i), r.name, fmt.Errorf("duplicate rule name (also policy[%d])", j))
		}
		names[r.name] = i
		p.rules = append(p.rules, r)
	}
	p.serverTLS = compileServerTLS(&cfg.Trust, p.trust, &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s := &p.summary
	for _, c := range p.trust.cas[:len(p.trust.cas)-len(p.trust.intermediates)] {
		s.ClientCAs = append(s.ClientCAs, c.Subject.String())
	}
	for _, c := range p.trust.intermediates {
		s.Intermediates = append(s.Intermediates, c.Subject.String())
	}
	for _, l := range p.trust.crls {
		s.CRLs += len(l)
	}
	s.Revocation = p.trust.revocation
	s.MinRSABits = p.trust.minRSABits
	s.OCSP = p.trust.settings.OCSP
	for _, src := range p.trust.settings.Sources {
		if src.CRLURL != "" {
			s.CRLURLs++
		}
		if src.OCSPResponder != "" {
			s.OCSPResponders++
		}
	}
	for _, r := range p.rules {
		s.Rules = append(s.Rules, r.name)
	}
	if p.serverTLS != nil {
		s.ServerCert = p.serverTLS.Certificates[0].Leaf.Subject.String()
	}
	return p, nil
}

func compileServerTLS(c *TrustConfig, t *trust, errs *fieldErrors) *tls.Config {
	minVersion := uint16(tls.VersionTLS12)
	switch c.TLSMinVersion {
	case "", "1.2":
	case "1.3":
		minVersion = tls.VersionTLS13
	default:
		errs.add("trust.tls_min_version", c.TLSMinVersion, errors.New(`must be "1.2" or "1.3"`))
	}
	if c.ServerCert == "" && c.ServerKey == "" {
		return nil
	}
	if c.ServerCert == "" || c.ServerKey == "" {
		errs.add("trust.server_cert", c.ServerCert, errors.New("server_cert and server_key go together"))
		return nil
	}
	cert, inKey, err := loadKeyPair(c.ServerCert, c.ServerKey)
	if err != nil {
		// The error of loadKeyPair never quotes key material.
		if inKey {
			errs.add("trust.server_key", c.ServerKey, err)
		} else {
			errs.add("trust.server_cert", c.ServerCert, err)
		}
		return nil
	}
	hints := x509.NewCertPool()
	for _, ca := range t.cas {
		hints.AddCert(ca)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		ClientCAs:    hints,
		MinVersion:   minVersion,
	}
}

// identityRules is the compiled identity step.
type identityRules struct {
	userFrom []string
	devices  []deviceRule
}

type deviceRule struct {
	name     string
	issuer   *x509.Certificate
	ou       string
	hasField string
	lookupBy []string
}

func compileFieldList(key string, list, def []string, errs *fieldErrors) []string {
	if len(list) == 0 {
		return def
	}
	out := make([]string, 0, len(list))
	for i, f := range list {
		name, ok := identityFields[f]
		if !ok {
			errs.add(fmt.Sprintf("%s[%d]", key, i), f, errors.New("unknown identity field (upn, email, cn, dns, serial, fingerprint)"))
			continue
		}
		out = append(out, name)
	}
	return out
}

func compileIdentity(c *IdentityConfig, t *trust, errs *fieldErrors) identityRules {
	ir := identityRules{userFrom: compileFieldList("identity.user_from", c.UserFrom, []string{"upn", "email", "cn"}, errs)}
	for i, d := range c.Device {
		key := fmt.Sprintf("identity.device[%d]", i)
		r := deviceRule{name: d.Name, ou: d.OU, lookupBy: compileFieldList(key+".lookup_by", d.LookupBy, []string{"serial", "cn"}, errs)}
		if r.name == "" {
			r.name = fmt.Sprintf("device[%d]", i)
		}
		if d.HasField != "" {
			f, ok := identityFields[d.HasField]
			if !ok {
				errs.add(key+".has_field", d.HasField, errors.New("unknown identity field"))
			}
			r.hasField = f
		}
		if d.IssuerCA != "" {
			cert, err := readOneCertificate(d.IssuerCA)
			if err != nil {
				errs.add(key+".issuer_ca", d.IssuerCA, err)
			} else {
				r.issuer = cert
				known := false
				for _, ca := range t.cas {
					known = known || ca.Equal(r.issuer)
				}
				if !known {
					errs.add(key+".issuer_ca", d.IssuerCA, errors.New("not among trust.client_ca or trust.intermediates"))
				}
			}
		}
		if d.IssuerCA == "" && d.OU == "" && d.HasField == "" {
			errs.add(key, "", errors.New("a device rule needs issuer_ca, ou or has_field"))
		}
		ir.devices = append(ir.devices, r)
	}
	return ir
}

// classify sets Kind, DeviceRule, Field and Name of id from the verified chain.
func (ir *identityRules) classify(id *Identity, chain []*x509.Certificate) {
	fields := ir.userFrom
	for i := range ir.devices {
		r := &ir.devices[i]
		if r.issuer != nil && !chainHas(chain, r.issuer) {
			continue
		}
		if r.ou != "" && !contains(id.OU, r.ou) {
			continue
		}
		if r.hasField != "" && id.field(r.hasField) == "" {
			continue
		}
		id.Kind, id.DeviceRule, fields = KindDevice, r.name, r.lookupBy
		break
	}
	for _, f := range fields {
		if v := id.field(f); v != "" {
			id.Field, id.Name = f, v
			return
		}
	}
}

func chainHas(chain []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range chain[1:] {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}
