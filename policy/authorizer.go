package policy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"sync/atomic"
	"time"
)

// Authorizer answers "may this certificate chain have access, and what
// access?" for both doors, Wi-Fi and VPN. It is safe for concurrent use.
// The policy in force is swapped whole by Swap; a decision uses the policy
// that was current when it started.
type Authorizer struct {
	policy atomic.Pointer[Policy]
	dir    Directory
	log    *slog.Logger
	rc     atomic.Pointer[RevocationChecker] // nil: CRL files only
}

// NewAuthorizer returns an Authorizer using p (which may be nil until the
// first Swap: then every decision denies with CodePolicyUnavailable) and the
// directory dir. It starts nothing.
func NewAuthorizer(p *Policy, dir Directory, logger *slog.Logger) *Authorizer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Authorizer{dir: dir, log: logger}
	if p != nil {
		a.policy.Store(p)
	}
	return a
}

// SetRevocation attaches the source of fetched CRLs and OCSP answers (see
// package policy/revocation) used by every decision that starts after it
// returns. Without one, only CRL files count.
func (a *Authorizer) SetRevocation(rc RevocationChecker) {
	if rc == nil {
		a.rc.Store(nil)
		return
	}
	a.rc.Store(&rc)
}

// Revocation returns the attached RevocationChecker, nil if none.
func (a *Authorizer) Revocation() RevocationChecker {
	if rc := a.rc.Load(); rc != nil {
		return *rc
	}
	return nil
}

// Swap makes p the policy for every decision that starts after it returns.
func (a *Authorizer) Swap(p *Policy) { a.policy.Store(p) }

// Policy returns the policy in force.
func (a *Authorizer) Policy() *Policy { return a.policy.Load() }

// Authorize runs trust → identity → directory → rules on a presented chain
// (leaf first; the client may omit intermediates the server knows). It never
// returns "denied" as an error: the Decision says why.
func (a *Authorizer) Authorize(ctx context.Context, chain []*x509.Certificate) Decision {
	p := a.policy.Load()
	if p == nil {
		return Decision{Code: CodePolicyUnavailable, Reason: "no policy loaded"}
	}
	d := p.VerifyContext(ctx, chain, time.Now(), a.Revocation())
	if d.Code != CodeAllowed {
		return d
	}
	return a.Decide(ctx, p, d)
}

// ServerTLS returns a TLS configuration for a door's server side: it presents
// the current policy's server certificate, asks for a client certificate
// (hinting the configured client CAs), and leaves verification to Authorize,
// so that a bad certificate yields a Decision with a reason rather than a TLS
// alert. maxVersion, when not zero, caps the TLS version (e.g.
// tls.VersionTLS12).
func (a *Authorizer) ServerTLS(maxVersion uint16) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		MaxVersion: maxVersion,
		ClientAuth: tls.RequireAnyClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			p := a.policy.Load()
			if p == nil {
				return nil, errNoPolicy
			}
			c := p.serverTLS.Clone()
			if maxVersion != 0 {
				c.MaxVersion = maxVersion
			}
			return c, nil
		},
	}
}
