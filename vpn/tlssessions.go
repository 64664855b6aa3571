package vpn

import (
	"crypto/rand"
	"crypto/tls"
)

// TLS session resumption on the enrollment API. The listener's tls.Config
// is the Server's own clone of the one New was given, with session ticket
// keys of its own: fresh random ones at New, replaced by fresh ones on
// every ForgetTLSSessions. A session (TLS 1.2 ticket or TLS 1.3 PSK) made
// before a trust or policy change then cannot be resumed after it: the
// client's next connection is a full handshake, its certificate chain
// presented and checked under the configuration in force. (Go's automatic
// ticket keys would survive a reload, and the caller's config may be
// shared with other listeners.) Every request is authorized again in any
// case; this only keeps a resumption from crossing a trust change.

// newTicketKey returns a fresh random session ticket key.
func newTicketKey() [32]byte {
	var k [32]byte
	rand.Read(k[:]) // never fails (crypto/rand since Go 1.24)
	return k
}

// ownTLS returns a clone of c with ticket keys of its own.
func ownTLS(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.SetSessionTicketKeys([][32]byte{newTicketKey()})
	return c
}

// ForgetTLSSessions replaces the enrollment listener's session ticket keys
// with fresh random ones: no TLS session made so far resumes. cmd calls it
// after each policy swap (trust anchors, CRLs, rules), as for RADIUS.
func (s *Server) ForgetTLSSessions() {
	s.tls.SetSessionTicketKeys([][32]byte{newTicketKey()})
	s.log.Info("vpn: enrollment TLS sessions forgotten")
}
