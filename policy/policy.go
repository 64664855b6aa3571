package policy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"time"
)

var errNoPolicy = errors.New("policy: no policy loaded")

// Policy is a compiled, immutable Config.
type Policy struct {
	serverTLS *tls.Config
}

// RevocationResult is the revocation status of one certificate of a chain.
type RevocationResult struct {
	Subject string // subject DN of the certificate checked
	Source  string // what answered, e.g. "crl testdata/pki/employee-int.crl"
	Status  string // "good", "revoked", "unknown", "not_checked"
	Detail  string // e.g. revocation time, or why status is unknown
}

// Compile validates cfg and builds an immutable Policy. now is used for
// nothing but reading files; validity is checked at decision time.
// Errors name the key path, e.g. `policy[2].vpn.allow[1]: "10.0/8": bad prefix`.
func Compile(cfg *Config) (*Policy, error) {
	return nil, errors.New("policy: not implemented")
}

// Verify runs the trust step on a presented chain at the current time. The
// returned Decision has Code CodeAllowed when the chain is trusted (which
// means only "trusted", not "allowed": Decide finishes the job).
func (p *Policy) Verify(chain []*x509.Certificate) Decision {
	return p.VerifyAt(chain, time.Now())
}

// VerifyAt is Verify at a given time.
func (p *Policy) VerifyAt(chain []*x509.Certificate, now time.Time) Decision {
	return Decision{Code: CodeUntrusted, Reason: "not implemented"}
}

// Decide finishes a decision that passed the trust step (d from p.Verify):
// identity, directory, rules.
func (a *Authorizer) Decide(ctx context.Context, p *Policy, d Decision) Decision {
	return d
}
