package radius

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net/netip"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// DrainTimeout is how long Run, once its context is done, keeps serving
// EAP conversations already in progress (new ones are dropped) before it
// closes the sockets.
const DrainTimeout = 5 * time.Second

// SetAuditor makes the server report every Access-Accept and every
// Access-Reject that ends an EAP conversation to a (nil = none). Call it
// before Run. a.Audit must not block.
func (s *Server) SetAuditor(a policy.Auditor) { s.auditor = a }

// Ready reports whether the server is serving: its sockets are bound and it
// is not shutting down.
func (s *Server) Ready() error {
	s.mu.Lock()
	bound := s.authAddr != nil
	s.mu.Unlock()
	switch {
	case s.draining.Load():
		return errors.New("radius: shutting down")
	case !bound:
		return errors.New("radius: not listening")
	}
	return nil
}

// finish records the end of a conversation: latency and audit event.
// allowed is what the NAS was told; reason, when set, overrides the
// decision's (e.g. a handshake failure before any decision).
func (s *Server) finish(n *nas, src netip.AddrPort, ss *session, d *policy.Decision, allowed bool, reason string, now time.Time) {
	dur := now.Sub(ss.start)
	s.stats.authLatency.Observe(dur)
	if s.auditor == nil {
		return
	}
	ev := policy.AuditEvent{
		Time: now, Door: "wifi", Event: "authenticate", NAS: n.name, NASAddr: src,
		Allowed: allowed, Reason: reason, TLSVersion: ss.tlsVersion, Resumed: ss.resumed, Duration: dur,
	}
	if d != nil {
		ev.Decision = *d
		ev.Decision.Chain, ev.Decision.Revocation = nil, nil // not audited; let them be collected
	} else {
		ev.Decision.Code = policy.CodeNoCertificate
		ev.Decision.Identity.Name = ss.identity
		if leaf := presentedLeaf(ss); leaf != nil {
			// The handshake failed after the peer sent a certificate: name
			// it (unverified) so the trail shows whose certificate it was.
			ev.Decision.Code = policy.CodeUntrusted
			ev.Decision.Identity = *leaf
			ev.Decision.Identity.Name = ss.identity
		}
	}
	s.auditor.Audit(ev)
}

// drain stops new conversations and waits, up to DrainTimeout, for those
// with a TLS handshake under way to end (one that has only sent its
// identity, or has gone silent, is not waited for) and for every pending
// decision; Run then cancels the decisions still waiting.
func (s *Server) drain() {
	s.draining.Store(true)
	// A datagram read but not yet processed may be the next round of a
	// conversation (or start its decision): wait for those too.
	start := time.Now()
	busy := func() bool {
		return s.sessions.active(start) > 0 || s.pendingDecisions() > 0 || s.inFlight.Load() > 0
	}
	n, nd := s.sessions.active(start), s.pendingDecisions()
	if !busy() {
		return
	}
	s.log.Info("radius: shutting down: letting conversations finish", "conversations", n, "decisions", nd, "timeout", s.drainTimeout)
	deadline := time.Now().Add(s.drainTimeout)
	for busy() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n, nd := s.sessions.active(start), s.pendingDecisions(); n > 0 || nd > 0 {
		s.log.Warn("radius: shutting down: conversations cut off", "conversations", n, "decisions", nd)
	}
}

// abandonedAfter: a conversation silent this long is not waited for at
// shutdown (a supplicant mid-handshake answers within round trips; a NAS
// retransmits after 3 s or more).
const abandonedAfter = 3 * time.Second

// active counts the conversations whose TLS handshake has begun and that
// are not abandoned, for a drain that began at start: heard from in the
// abandonedAfter before start or since, and silent for less than
// abandonedAfter counted from the later of their last datagram and start.
// A conversation heard from just before shutdown thus gets a whole
// abandonedAfter for its next round, however long it had waited already.
func (t *sessionTable) active(start time.Time) int {
	cutoff := time.Now().Add(-abandonedAfter)
	if startCut := start.Add(-abandonedAfter); !cutoff.After(start) {
		cutoff = startCut
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	// Most recently active first.
	for ss := t.lists[listActive].head; ss != nil && ss.last.After(cutoff); ss = ss.next {
		n++
	}
	return n
}

// presentedLeaf is the identity of the certificate the peer of ss sent,
// unverified, or nil (none sent, or not parseable: then its fingerprint).
func presentedLeaf(ss *session) *policy.Identity {
	if ss.eap == nil {
		return nil
	}
	der := ss.eap.PresentedLeaf()
	if der == nil {
		return nil
	}
	if c, err := x509.ParseCertificate(der); err == nil {
		id, _ := policy.IdentityOf(c) // partial on a bad SAN: still names it
		return &id
	}
	sum := sha256.Sum256(der)
	return &policy.Identity{Fingerprint: hex.EncodeToString(sum[:])}
}
