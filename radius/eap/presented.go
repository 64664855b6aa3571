package eap

import (
	"crypto/tls"
	"crypto/x509"
	"sync/atomic"
)

// The presented leaf. A handshake can fail after the peer sent its
// certificate — a CertificateVerify that does not match (someone presenting
// another person's certificate without its key), a certificate crypto/tls
// cannot use — and then no decision names it. The audit trail still must,
// so the session keeps the leaf the peer presented, as sent.

// presentedLeaf records the first certificate of a peer's Certificate
// message. It is written on the TLS goroutine and read by the caller
// after a step, hence atomic.
type presentedLeaf struct {
	der atomic.Pointer[[]byte]
}

// verify is a Config.VerifyPeerCertificate that records the leaf and then
// runs next (nil: none). crypto/tls calls it with the raw chain before it
// checks the peer's CertificateVerify, in TLS 1.2 and 1.3.
func (p *presentedLeaf) verify(next func([][]byte, [][]*x509.Certificate) error) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, chains [][]*x509.Certificate) error {
		if len(raw) > 0 && p.der.Load() == nil {
			leaf := raw[0]
			p.der.Store(&leaf)
		}
		if next != nil {
			return next(raw, chains)
		}
		return nil
	}
}

// apply makes c record the presented leaf (see perSession).
func (p *presentedLeaf) apply(c *tls.Config) {
	c.VerifyPeerCertificate = p.verify(c.VerifyPeerCertificate)
}

// perSession returns base cloned once with set applied, and set applied to
// each configuration base.GetConfigForClient returns (the policy may pick
// one per ClientHello): the per-conversation hooks — TLS session tickets,
// the presented leaf — reach whichever configuration the handshake uses.
func perSession(base *tls.Config, set func(*tls.Config)) *tls.Config {
	c := base.Clone()
	set(c)
	if get := base.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			cc, err := get(hi)
			if err != nil || cc == nil {
				return cc, err
			}
			cc = cc.Clone()
			set(cc)
			return cc, nil
		}
	}
	return c
}

// PresentedLeaf is the DER of the certificate the peer presented, or nil
// if it sent none (yet). Unverified: for the audit trail of a handshake
// that failed, never for a decision.
func (s *ServerSession) PresentedLeaf() []byte {
	if b := s.leaf.der.Load(); b != nil {
		return *b
	}
	return nil
}
