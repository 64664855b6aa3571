package radius

import (
	"bytes"
	"errors"
	"hash"
	"net"
	"time"

	"github.com/gatehouse/gatehouse/radius/eap"
)

// Decisions run apart from the workers. Authorize may wait seconds on the
// directory (LDAP timeout) or a revocation source; on a worker that would
// stall every other conversation, Status-Server and the reply cache, and a
// few slow logins would get the server marked dead by its access points.
// So the worker hands a request whose EAP message goes to TLS — its
// session still locked, its reply-cache entry still busy — to the
// conversation's own TLS goroutine and returns (stepDone). When TLS has
// written its flight, that goroutine answers with the Access-Challenge;
// when the handshake has finished, it takes a decision slot, authorizes,
// and answers with the Access-Accept, -Reject or -Challenge (TLS 1.3
// commitment). Either way it stores the reply in the reply cache and
// unlocks the session. (A decision started by a retransmission, below,
// runs on a goroutine of its own.) Meanwhile a retransmission of the
// request is dropped as a duplicate in progress; after the reply is stored
// it gets the same bytes.
//
// At most MaxPendingDecisions run at once. When all are taken the request
// is dropped (reason "decisions_busy") and the conversation remembers
// that its handshake is done: the NAS's retransmission of the same request
// starts the decision, without feeding the EAP message to TLS again.

// errDecisionPending tells process that another goroutine (a TLS or
// decision goroutine, or the accounting committer) owns the request now:
// it answers, completes or abandons the cache entry.
var errDecisionPending = errors.New("radius: decision pending")

// pendingDecision is what a decision goroutine needs from the request: the
// worker's job is recycled as soon as process returns.
type pendingDecision struct {
	n    *nas
	conn net.PacketConn
	key  cacheKey // source, Identifier, Request Authenticator
	pkt  []byte   // copy of the request
	ss   *session // locked; the goroutine unlocks it
	now  time.Time
}

// tryDecision takes a decision slot; false if all are in use.
func (s *Server) tryDecision() bool {
	select {
	case s.decSem <- struct{}{}:
		return true
	default:
		return false
	}
}

// pendingDecisions is the number of decisions running.
func (s *Server) pendingDecisions() int { return len(s.decSem) }

// startDecision hands a conversation whose handshake has finished to a
// decision goroutine. The caller holds a slot (tryDecision) and ss.mu,
// both of which pass to the goroutine.
func (s *Server) startDecision(w *worker, n *nas, p packet, ss *session, now time.Time) {
	pd := s.pending(w, n, p, ss, now)
	s.decWG.Add(1)
	go func() {
		defer s.decWG.Done()
		defer func() { <-s.decSem }()
		s.runDecision(pd, nil)
	}()
}

// pending keeps what answering the worker's request later needs.
func (s *Server) pending(w *worker, n *nas, p packet, ss *session, now time.Time) *pendingDecision {
	return &pendingDecision{n: n, conn: w.conn, key: w.key, pkt: bytes.Clone(p.b), ss: ss, now: now}
}

// stepDone answers a request whose EAP step ran on the conversation's TLS
// goroutine (eap.HandleAsync), on that goroutine: the worker handed it the
// message and went on, so no other goroutine is woken for the step. A
// finished handshake is decided right here, in a decision slot like a
// decision goroutine's.
func (s *Server) stepDone(pd *pendingDecision, step eap.Step) {
	ss := pd.ss
	if ss.eap.Started() {
		s.sessions.promote(ss)
	}
	if step.Outcome != eap.Decide {
		s.runDecision(pd, &step)
		return
	}
	if !s.tryDecision() {
		ss.awaitDecision = true // the NAS's retransmission starts it
		s.dropN(pd.n, dDecisionsBusy)
		unlockSession(ss)
		s.cache.abandon(&pd.key)
		return
	}
	defer func() { <-s.decSem }()
	s.runDecision(pd, nil)
}

// runDecision decides (step nil) or takes step, and answers the request.
func (s *Server) runDecision(pd *pendingDecision, step *eap.Step) {
	m := md5Pool.Get().(hash.Hash)
	defer md5Pool.Put(m)
	w := &worker{md5: m, src: pd.key.src, conn: pd.conn, key: pd.key}
	p, err := parsePacket(pd.pkt)
	if err != nil { // parsed by the worker already
		unlockSession(pd.ss)
		s.cache.abandon(&pd.key)
		return
	}
	h := pd.n.getHMAC()
	defer pd.n.putHMAC(h)
	ss := pd.ss
	var reply []byte
	func() {
		defer unlockSession(ss)
		var st eap.Step
		if step != nil {
			st = *step
		} else {
			ss.decision, st = s.decide(ss)
		}
		reply, err = s.conclude(w, h, pd.n, p, pd.key.src, ss, st, pd.now)
		if reply != nil {
			reply, err = echoProxyState(reply, p, h, m, pd.n.secret)
		}
	}()
	if reply == nil {
		s.cache.abandon(&pd.key)
		if err != nil {
			s.log.Warn("radius: request dropped", "nas", pd.n.name, "src", pd.key.src.String(), "err", err)
		}
		return
	}
	s.cache.complete(&pd.key, reply)
	s.sendTo(pd.conn, pd.key.src, reply)
}

// unlockSession releases a conversation after a request, closing it if it
// was evicted meanwhile.
func unlockSession(ss *session) {
	if ss.evicted.Load() {
		ss.eap.Close()
	}
	ss.mu.Unlock()
}

// waitDecisions waits until no decision runs or the deadline passes.
func (s *Server) waitDecisions(deadline time.Time) {
	for s.pendingDecisions() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}
