package radius

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net/netip"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/radius/eap"
)

// eapOverhead is subtracted from Framed-MTU: the EAPOL header.
const eapOverhead = 4

// access handles an Access-Request: starts or continues an EAP conversation.
// A nil reply with nil error is a silent drop already counted.
func (s *Server) access(w *worker, h hash.Hash, n *nas, p packet, src netip.AddrPort, now time.Time) ([]byte, error) {
	msg := p.appendAll(w.eapBuf[:0], attrEAPMessage)
	if len(msg) == 0 {
		s.rejectLog(n, src, "no EAP-Message (only EAP-TLS is served)")
		return s.reject(w, h, n, p, nil)
	}
	ep, err := eap.Parse(msg)
	if err != nil || ep.Code != eap.CodeResponse {
		s.dropN(n, dMalformed)
		return nil, nil
	}
	state, hasState := p.attr(attrState)
	if !hasState {
		if ep.Type != eap.TypeIdentity {
			s.rejectLog(n, src, "conversation does not start with EAP-Response/Identity")
			return s.reject(w, h, n, p, eap.AppendFailure(nil, ep.ID))
		}
		if s.draining.Load() {
			s.dropN(n, dShuttingDown)
			return nil, nil
		}
		return s.startSession(w, h, n, p, ep, now)
	}
	var k [16]byte
	if len(state) != len(k) {
		s.rejectLog(n, src, "unknown State")
		return s.reject(w, h, n, p, eap.AppendFailure(nil, ep.ID))
	}
	copy(k[:], state)
	ss := s.sessions.get(&k, now)
	if ss == nil {
		s.rejectLog(n, src, "no such conversation (expired or evicted)")
		return s.reject(w, h, n, p, eap.AppendFailure(nil, ep.ID))
	}
	if !ss.mu.TryLock() {
		s.dropN(n, dSessionBusy)
		return nil, nil
	}
	handedOff := false
	defer func() {
		if !handedOff {
			unlockSession(ss)
		}
	}()
	var step eap.Step
	if ss.awaitDecision {
		// The handshake finished but no decision slot was free: this is
		// the NAS's retransmission of that request.
		if ep.ID != ss.eap.ID() {
			s.dropN(n, dEAPDiscard)
			return nil, nil
		}
		step.Outcome = eap.Decide
	} else {
		pd := s.pending(w, n, p, ss, now)
		s.decWG.Add(1) // the request is answered on another goroutine, like a decision
		step = ss.eap.HandleAsync(msg, func(st eap.Step) {
			defer s.decWG.Done()
			s.stepDone(pd, st)
		})
		if step.Outcome == eap.Pending {
			handedOff = true // to the conversation's TLS goroutine
			return nil, errDecisionPending
		}
		s.decWG.Done()
	}
	if ss.eap.Started() {
		s.sessions.promote(ss)
	}
	if step.Outcome == eap.Decide {
		if !s.tryDecision() {
			ss.awaitDecision = true
			s.dropN(n, dDecisionsBusy)
			return nil, nil
		}
		ss.awaitDecision = false
		handedOff = true
		s.startDecision(w, n, p, ss, now)
		return nil, errDecisionPending
	}
	return s.conclude(w, h, n, p, src, ss, step, now)
}

// conclude answers a request of a conversation after its EAP step (and
// decision, if the step needed one). The caller holds ss.mu.
func (s *Server) conclude(w *worker, h hash.Hash, n *nas, p packet, src netip.AddrPort, ss *session, step eap.Step, now time.Time) ([]byte, error) {
	d := ss.decision
	switch step.Outcome {
	case eap.Discard:
		s.dropN(n, dEAPDiscard)
		s.log.Debug("radius: EAP response discarded", "nas", n.name, "identity", ss.identity, "err", step.Err)
		return nil, nil
	case eap.Continue:
		for _, v := range s.sessions.account(ss, ss.eap.Bytes()) {
			closeSession(v) // ss itself (locked) is closed when unlocked
		}
		return s.challenge(w, h, n, p, step.Msg, ss.key[:])
	case eap.Success:
		s.sessions.remove(ss)
		b, err := s.accept(w, h, n, p, ss, d, step.Msg)
		if b != nil && b[0] == codeAccessAccept {
			s.finish(n, src, ss, d, true, "", now)
		} else {
			s.finish(n, src, ss, d, false, "Access-Accept could not be built", now)
		}
		return b, err
	default: // Failure
		s.sessions.remove(ss)
		attrs := []any{"nas", n.name, "identity", ss.identity, "reason", errString(step.Err)}
		if d != nil {
			attrs = append(attrs, decisionAttrs(d)...)
		}
		s.log.Info("radius: reject", attrs...)
		reason := ""
		if d == nil || d.Allowed {
			reason = errString(step.Err)
		}
		s.finish(n, src, ss, d, false, reason, now)
		return s.reject(w, h, n, p, step.Msg)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func decisionAttrs(d *policy.Decision) []any {
	return []any{"code", d.Code.String(), "rule", d.Rule, "name", d.Identity.Name, "decision", d.Reason}
}

func (s *Server) startSession(w *worker, h hash.Hash, n *nas, p packet, ep eap.Packet, now time.Time) ([]byte, error) {
	frag := s.set.fragSize
	if mtu, ok := p.uint32Attr(attrFramedMTU); ok && mtu > eapOverhead {
		frag = min(frag, int(mtu)-eapOverhead)
	}
	ident := ep.Data
	if len(ident) > 253 {
		ident = ident[:253]
	}
	ss := &session{nas: n.name, client: n.idx, identity: string(ident), start: now}
	if _, err := rand.Read(ss.key[:]); err != nil {
		return nil, fmt.Errorf("radius: random State: %w", err)
	}
	var start []byte
	ss.eap, start = eap.NewServerSession(&s.eapCfg, ep.ID, frag)
	if old := s.sessions.add(ss, now); old != nil {
		closeSession(old)
	}
	s.stats.sessionsOpened.Add(1)
	return s.challenge(w, h, n, p, start, ss.key[:])
}

// decide authorizes the peer's certificates after the handshake, on a
// decision goroutine (decision.go). It always
// runs Authorize — for resumed sessions too, on the certificates restored
// from the server-side session — so a decision is never replayed.
func (s *Server) decide(ss *session) (*policy.Decision, eap.Step) {
	cs := ss.eap.State()
	ss.tlsVersion, ss.resumed = cs.Version, cs.DidResume
	if len(cs.PeerCertificates) == 0 {
		return nil, ss.eap.Reject(errors.New("radius: client presented no certificate"))
	}
	ctx, cancel := context.WithTimeout(s.decCtx, s.rv().engine.AuthTimeout())
	d := s.auth.Authorize(ctx, cs.PeerCertificates).At(policy.DoorWiFi)
	cancel()
	if !d.Allowed {
		return &d, ss.eap.Reject(fmt.Errorf("radius: denied: %s", d.Code))
	}
	return &d, ss.eap.Accept()
}

func (s *Server) challenge(w *worker, h hash.Hash, n *nas, p packet, msg, state []byte) ([]byte, error) {
	r := newReply(make([]byte, 0, 64+len(msg)+len(msg)/253*2), codeAccessChallenge, p.id(), p.auth())
	r.addEAP(msg)
	r.add(attrState, state)
	s.stats.challenges.Add(1)
	return r.finish(h, w.md5, n.secret)
}

func (s *Server) reject(w *worker, h hash.Hash, n *nas, p packet, eapMsg []byte) ([]byte, error) {
	r := newReply(make([]byte, 0, 128), codeAccessReject, p.id(), p.auth())
	if eapMsg != nil {
		r.addEAP(eapMsg)
	}
	if s.set.replyMessage != "" {
		r.addString(attrReplyMessage, s.set.replyMessage)
	}
	s.stats.rejects.Add(1)
	return r.finish(h, w.md5, n.secret)
}

func (s *Server) accept(w *worker, h hash.Hash, n *nas, p packet, ss *session, d *policy.Decision, eapMsg []byte) ([]byte, error) {
	r := newReply(make([]byte, 0, 512), codeAccessAccept, p.id(), p.auth())
	r.addEAP(eapMsg)
	name := d.Identity.Name
	if name == "" {
		name = ss.identity
	}
	if name != "" {
		r.addString(attrUserName, truncate(name, maxAttrData))
	}
	addWiFi(&r, &d.WiFi)
	cls, tok := s.rememberAccept(n, w.src, p, name, d)
	if cls != "" {
		r.addString(attrClass, cls)
	}
	recv, send := eap.MPPEKeys(ss.eap.MSK())
	if err := addMPPE(&r, n.secret, p.auth(), recv, send); err != nil {
		return nil, err
	}
	b, err := r.finish(h, w.md5, n.secret)
	if err != nil {
		if cls != "" {
			s.live.forget(tok)
		}
		s.log.Error("radius: building Access-Accept", "nas", n.name, "err", err)
		return s.reject(w, h, n, p, eap.AppendFailure(nil, eapMsg[1]))
	}
	s.stats.accepts.Add(1)
	if s.log.Enabled(context.Background(), slog.LevelInfo) {
		cs := ss.eap.State()
		s.log.Info("radius: accept", append([]any{"nas", n.name, "identity", ss.identity,
			"tls", tlsVersionName(cs.Version), "resumed", cs.DidResume, "vlan", d.WiFi.VLAN}, decisionAttrs(d)...)...)
	}
	return b, nil
}

// addWiFi adds the rule's Wi-Fi attributes. The tunnel attributes use tag
// 0 (RFC 2868): the integer ones carry a zero tag octet, the group id is
// sent without a tag octet (its first octet is > 0x1F), which is how
// hostapd and FreeRADIUS read and write tag 0.
func addWiFi(r *reply, wf *policy.WiFi) {
	if wf.VLAN != "" {
		r.addTaggedInt(attrTunnelType, 0, 13)      // VLAN
		r.addTaggedInt(attrTunnelMediumType, 0, 6) // IEEE-802
		v := truncate(wf.VLAN, maxAttrData-1)
		if v[0] <= 0x1F {
			r.add(attrTunnelPrivateGroupID, append([]byte{0}, v...))
		} else {
			r.addString(attrTunnelPrivateGroupID, v)
		}
	}
	if wf.SessionTimeout > 0 {
		r.addUint32(attrSessionTimeout, uint32(min(wf.SessionTimeout/time.Second, 1<<32-1)))
	}
	if wf.FilterID != "" {
		r.addString(attrFilterID, truncate(wf.FilterID, maxAttrData))
	}
	if wf.Class != "" {
		r.addString(attrClass, truncate(wf.Class, maxAttrData))
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func tlsVersionName(v uint16) string {
	switch v {
	case 0x0303:
		return "1.2"
	case 0x0304:
		return "1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}
