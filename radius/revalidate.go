package radius

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/reval"
)

// Re-validation. Every RevalidateEvery, and when Revalidate is called (cmd
// does after a policy reload), each live Wi-Fi session's certificate chain
// is authorized again:
//
//   - denied (revoked, expired, no longer in a group, no rule…): the NAS
//     gets a Disconnect-Request; on Disconnect-ACK, or a NAK saying the
//     session is unknown (Error-Cause 503), the session is forgotten;
//     otherwise it is tried again at the next run;
//   - allowed with different Wi-Fi attributes (VLAN, Session-Timeout,
//     Filter-Id): a CoA-Request with the new attributes when the client
//     has coa = true — falling back to a Disconnect-Request if the NAS
//     NAKs it — else a Disconnect-Request, after which the station
//     re-authenticates into its new VLAN;
//   - allowed with the same attributes: nothing is sent;
//   - unknown (directory unreachable, revocation status unknown, no
//     policy, timeout): nothing is sent; one warning per run counts them.
//     This is deliberate: an outage of the directory or of a CRL server
//     must not disconnect every employee from Wi-Fi. New authentications
//     still fail closed; the session is judged again at the next run.
//
// Outcomes are classified by the one re-validation engine of both doors
// (package policy/reval): a certificate cut (revoked, expired…) always
// disconnects; a policy cut (no rule, door not permitted, left a group…)
// goes through the mass-cut guard, which holds every policy cut of a run
// that would cut more than max_cut_fraction of at least 20 live sessions
// (the sessions stay connected) until an operator confirms; an undecided
// outcome never disconnects. A Wi-Fi session "suspended" by a denial is
// disconnected; its record is forgotten after the Disconnect-ACK, since a
// station that comes back authenticates afresh.
//
// Within a run, a NAS that does not answer (all retries timed out, or the
// port is unreachable) is not asked again: its remaining sessions are
// counted, logged once as a warning and left for the next run, so a NAS
// that is down costs one round of timeouts per run rather than one per
// session. Up to revalidateConcurrency authorizations and exchanges run at
// once.

// revalidateConcurrency is the engine's default bound on authorizations
// and exchanges in flight.
const revalidateConcurrency = reval.DefaultConcurrency

// revalState is the Server's re-validation state, made on first use.
type revalState struct {
	once    sync.Once
	engine  *reval.Engine  // shared with the VPN door when cmd sets it
	trigger *reval.Trigger // TriggerRevalidate → liveLoop (coalescing; served by any later run)
	last    atomic.Pointer[reval.Report]
}

func (s *Server) rv() *revalState {
	s.reval.once.Do(func() {
		if s.reval.engine == nil {
			s.reval.engine = reval.Default(s.log)
		}
		s.reval.trigger = reval.NewTrigger()
	})
	return &s.reval
}

// SetRevalidation makes e the re-validation engine (shared with the VPN
// door, so one confirmation of a held mass cut releases both) and the
// source of the authorization timeout. Call it before Run.
func (s *Server) SetRevalidation(e *reval.Engine) {
	if e != nil {
		s.reval.engine = e
	}
}

// TriggerRevalidate asks the server's loop for a re-validation soon and
// returns at once; triggers arriving while one is pending coalesce, and a
// trigger is served by any run that starts after it (Revalidate called by
// `gatehouse reload` included), so none is run twice.
func (s *Server) TriggerRevalidate() {
	s.rv().trigger.Fire()
}

// LastRevalidation returns the report of the latest run (zero before the first).
func (s *Server) LastRevalidation() reval.Report {
	if r := s.rv().last.Load(); r != nil {
		return *r
	}
	return reval.Report{Door: policy.DoorWiFi}
}

func sameWiFi(a, b *policy.WiFi) bool {
	return a.VLAN == b.VLAN && a.SessionTimeout == b.SessionTimeout && a.FilterID == b.FilterID
}

// Revalidate authorizes every live Wi-Fi session again and disconnects or
// changes those whose access was revoked or changed (see the comment at
// the top of revalidate.go). It returns when every request it sent has been
// answered or has given up; runs do not overlap.
func (s *Server) Revalidate(ctx context.Context) reval.Report {
	s.revalMu.Lock()
	defer s.revalMu.Unlock()
	return s.revalidateLocked(ctx)
}

// revalidateTriggered runs unless every trigger so far was served by a run
// that started after it.
func (s *Server) revalidateTriggered(ctx context.Context) {
	s.revalMu.Lock()
	defer s.revalMu.Unlock()
	if s.rv().trigger.Pending() {
		s.revalidateLocked(ctx)
	}
}

// revalidateLocked is Revalidate with revalMu held.
func (s *Server) revalidateLocked(ctx context.Context) reval.Report {
	s.rv().trigger.Start()
	refs := s.live.snapshot()
	run := &revalRun{down: make(map[netip.AddrPort]int)}
	items := make([]reval.Item[*liveRef], 0, len(refs))
	for i := range refs {
		if len(refs[i].info.chain) > 0 {
			items = append(items, reval.Item[*liveRef]{V: &refs[i], Live: true})
		}
	}
	rep := reval.Run(ctx, s.rv().engine, policy.DoorWiFi, items, func(ctx context.Context, r *liveRef) policy.Decision {
		return s.auth.Authorize(ctx, r.info.chain)
	}, func(ctx context.Context, r *liveRef, o reval.Outcome) {
		s.revalidateOne(ctx, run, r, &o)
	})
	for dst, skipped := range run.down {
		if skipped > 0 {
			s.log.Warn("radius: NAS did not answer dynamic authorization; its other sessions are left for the next run",
				"nas_addr", dst.String(), "skipped", skipped)
		}
	}
	s.rv().last.Store(&rep)
	s.log.Debug("radius: revalidated", "report", rep.String())
	return rep
}

// revalRun is the state of one Revalidate run: NAS addresses that did not
// answer (timeout or error), with how many requests to them were skipped
// since. A NAS that is down costs one round of timeouts per run, not one
// per session.
type revalRun struct {
	mu   sync.Mutex // guards down
	down map[netip.AddrPort]int
}

// skip reports whether dst is known down in this run, counting the skip.
func (r *revalRun) skip(dst netip.AddrPort) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.down[dst]
	if ok {
		r.down[dst] = n + 1
	}
	return ok
}

func (r *revalRun) markDown(dst netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.down[dst]; !ok {
		r.down[dst] = 0
	}
}

// sendUnlessDown is sendDyn unless the NAS is known down in this run.
func (s *Server) sendUnlessDown(ctx context.Context, run *revalRun, kind dynKind, info *sessionInfo, wf *policy.WiFi, code policy.Code, reason string) dynResult {
	dst, ok := dynTarget(s.nas, info)
	if ok && run.skip(dst) {
		return dynResult{Result: "skipped"}
	}
	res := s.sendDyn(ctx, kind, info, wf, code, reason)
	if ok && (res.Result == "timeout" || res.Result == "error") && ctx.Err() == nil {
		run.markDown(dst)
	}
	return res
}

func (s *Server) revalidateOne(ctx context.Context, run *revalRun, r *liveRef, o *reval.Outcome) {
	info := &r.info
	d := &o.Decision
	switch {
	case o.Class == reval.Transient:
		s.log.Debug("radius: cannot re-validate Wi-Fi session; left connected", "nas", info.nas.name,
			"user", info.userName, "session", info.sessionID, "code", d.Code.String(), "reason", d.Reason)
	case o.Held:
		s.log.Debug("radius: Wi-Fi session's cut held by the mass-cut guard", "nas", info.nas.name,
			"user", info.userName, "code", d.Code.String())
	case o.Cut():
		s.disconnect(ctx, run, r, d.Code, d.Code.String()+": "+d.Reason)
	case sameWiFi(&info.wifi, &d.WiFi):
		if info.rule != d.Rule {
			s.live.update(r.e, d.Rule, info.wifi)
		}
	case info.nas.dyn.coa:
		reason := fmt.Sprintf("rule %q: Wi-Fi attributes changed", d.Rule)
		res := s.sendUnlessDown(ctx, run, dynCoA, info, &d.WiFi, d.Code, reason)
		switch res.Result {
		case "ack":
			s.live.update(r.e, d.Rule, d.WiFi)
		case "nak":
			s.disconnect(ctx, run, r, d.Code, reason+"; CoA refused")
		}
	default:
		s.disconnect(ctx, run, r, d.Code, fmt.Sprintf("rule %q: Wi-Fi attributes changed (client without CoA)", d.Rule))
	}
}

func (s *Server) disconnect(ctx context.Context, run *revalRun, r *liveRef, code policy.Code, reason string) {
	res := s.sendUnlessDown(ctx, run, dynDisconnect, &r.info, nil, code, reason)
	if res.Result == "ack" || (res.Result == "nak" && res.ErrorCause == errorCauseNoSession) {
		s.live.remove(r.e)
	}
}

// liveLoop expires stale sessions and re-validates periodically until ctx
// is done.
func (s *Server) liveLoop(ctx context.Context) {
	expire := time.NewTicker(10 * time.Second)
	defer expire.Stop()
	var tick <-chan time.Time
	if every := s.set.dyn.revalidateEvery; every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	trigger := s.rv().trigger.C()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-expire.C:
			s.live.expire(now)
		case <-tick:
			s.Revalidate(ctx)
		case <-trigger:
			s.revalidateTriggered(ctx)
		}
	}
}

// rememberAccept is called while building an Access-Accept: it records the
// session for re-validation and returns the Class token to add ("" when
// the client has no dynamic authorization or the decision no chain).
func (s *Server) rememberAccept(n *nas, src netip.AddrPort, p packet, userName string, d *policy.Decision) (string, [16]byte) {
	if n.dyn.port == 0 || len(d.Chain) == 0 || !src.IsValid() {
		return "", [16]byte{}
	}
	now := time.Now()
	cls, tok, ok := s.live.accept(n, src.Addr(), p, userName, d, now)
	if !ok {
		return "", tok
	}
	if s.sharedRun != nil {
		if info, ok := s.live.info(tok); ok {
			s.spoolSession(spoolOp{kind: kindSession, sess: &info, tok: tok, at: now})
		}
	}
	return cls, tok
}

// trackAccounting links an Accounting-Request to its session.
func (s *Server) trackAccounting(n *nas, src netip.AddrPort, p packet) {
	now := time.Now()
	l := s.live.accountLink(n, src.Addr(), p, now)
	if l.by != "" {
		s.log.Debug("radius: accounting linked to a Wi-Fi session", "nas", n.name, "linked_by", l.by)
	}
	if s.sharedRun == nil {
		return
	}
	if l.changed {
		s.spoolSession(spoolOp{kind: kindSession, sess: &l.info, tok: l.tok, at: now})
		return
	}
	if l.by == "" {
		if st, _ := p.uint32Attr(attrAcctStatusType); st == 1 || st == 3 {
			if tok, ok := findToken(p); ok {
				s.requestAdopt(n, src, p, tok)
			}
		}
	}
}

// WiFiSessions reports how many accepted Wi-Fi sessions are tracked:
// pending (no accounting yet) and live.
func (s *Server) WiFiSessions() (pending, live int) { return s.live.len() }
