package policy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

var errNoPolicy = errors.New("policy: no policy loaded")

// RevocationResult is the revocation status of one certificate of a chain.
type RevocationResult struct {
	Subject string // subject DN of the certificate checked
	Source  string // what answered, e.g. "crl testdata/pki/employee-int.crl"
	Status  string // "good", "revoked" or "unknown"
	Detail  string // e.g. revocation time, or why status is unknown
}

// Verify runs the trust step on a presented chain (leaf first) at the
// current time. The returned Decision has Code CodeAllowed when the chain is
// trusted — which means only "trusted": Decide finishes the job.
func (p *Policy) Verify(chain []*x509.Certificate) Decision {
	return p.VerifyAt(chain, time.Now())
}

// VerifyAt is Verify at a given time. It does no I/O: only CRL files count
// for revocation (use VerifyContext for fetched CRLs and OCSP).
func (p *Policy) VerifyAt(chain []*x509.Certificate, now time.Time) Decision {
	return p.VerifyContext(context.Background(), chain, now, nil)
}

// VerifyContext is VerifyAt with the fetched CRLs and OCSP answers of rc
// (nil: CRL files only). It may block on OCSP until ctx is done or the
// configured ocsp_timeout passes.
//
// Whenever a leaf was presented, the Decision's Identity describes it
// (subject, issuer, serial, fingerprint, names), also when the trust step
// denies it, so that every audit line names the certificate.
func (p *Policy) VerifyContext(ctx context.Context, chain []*x509.Certificate, now time.Time, rc RevocationChecker) Decision {
	d, v := p.trust.verify(ctx, chain, now, rc)
	if len(chain) == 0 || chain[0] == nil {
		return d
	}
	var err error
	if v != nil { // the chain verified: its leaf's identity is remembered
		d.Identity, err = v.id, v.idErr
	} else {
		d.Identity, err = IdentityOf(chain[0])
	}
	if err != nil && d.Code == CodeAllowed {
		d.Code, d.Reason = CodeNoIdentity, err.Error()
	}
	return d
}

// maxGroupKeys bounds the cache of parsed group DNs.
const maxGroupKeys = 1 << 14

// groupKey parses a group DN as returned by the directory, remembering the
// result: directories return the same few group DNs over and over.
func (p *Policy) groupKey(dn string) (entryGroup, error) {
	if v, ok := p.groups.Load(dn); ok {
		return v.(entryGroup), nil
	}
	k, name, err := parseDN(dn)
	if err != nil {
		return entryGroup{}, err
	}
	e := entryGroup{dn: k, name: name}
	if p.ngroups.Add(1) <= maxGroupKeys {
		p.groups.Store(dn, e)
	}
	return e, nil
}

// Decide finishes a decision that passed the trust step (d from p.Verify):
// identity, directory, rules. d is returned unchanged if it is not trusted.
func (a *Authorizer) Decide(ctx context.Context, p *Policy, d Decision) Decision {
	if d.Code != CodeAllowed || len(d.Chain) == 0 {
		return d
	}
	id := &d.Identity
	p.identity.classify(id, d.Chain)
	if id.Name == "" {
		d.Code, d.Reason = CodeNoIdentity, fmt.Sprintf("certificate carries none of the %s identity fields configured", id.Kind)
		return d
	}
	if a.dir == nil {
		d.Code, d.Reason = CodeDirectoryUnavailable, "no directory configured"
		return d
	}
	dn, groups, err := a.dir.Lookup(ctx, id.Kind.String(), id.lookupFields())
	if err != nil {
		d.Code = CodeDirectoryError
		var u interface{ Unavailable() bool }
		if errors.As(err, &u) && u.Unavailable() {
			d.Code = CodeDirectoryUnavailable
		}
		d.Reason = fmt.Sprintf("directory lookup of %s %q failed: %v", id.Field, id.Name, err)
		return d
	}
	if dn == "" {
		d.Code, d.Reason = CodeNotInDirectory, fmt.Sprintf("no directory entry for %s %s %q", id.Kind, id.Field, id.Name)
		return d
	}
	d.DN, d.Groups = dn, groups
	var buf [16]entryGroup
	eg := buf[:0]
	for _, g := range groups {
		e, err := p.groupKey(g)
		if err != nil {
			// Fail closed: skipping the group could stop a deny rule
			// naming it from firing.
			a.log.Warn("policy: directory returned a malformed group DN", "group", g, "err", err)
			d.Code, d.Reason = CodeDirectoryError, fmt.Sprintf("directory returned a malformed group DN %q for %s %q: %v", g, id.Field, id.Name, err)
			return d
		}
		eg = append(eg, e)
	}
	for _, r := range p.rules {
		if !r.matches(&d.Identity, eg) {
			continue
		}
		d.Rule = r.name
		if r.deny {
			d.Code, d.Reason = CodeRuleDenies, "rule "+r.name+" denies access"
			return d
		}
		d.Allowed, d.Code, d.Reason = true, CodeAllowed, "rule "+r.name+" allows access"
		d.WiFi, d.VPN = r.wifi, r.vpn
		return d
	}
	d.Code, d.Reason = CodeNoRule, "no rule matches"
	return d
}
