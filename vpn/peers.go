package vpn

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"sort"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/reval"
	"github.com/gatehouse/gatehouse/vpn/filter"
)

// identityOf names the holder of an allowed decision: a display name and the
// key that counts toward the per-identity limit.
func identityOf(d policy.Decision, leaf *x509.Certificate) (name, key string) {
	id := d.Identity
	if id.Name != "" {
		return id.Name, id.Kind.String() + "/" + id.Field + "/" + id.Name
	}
	return leaf.Subject.CommonName, "cn/" + leaf.Subject.CommonName
}

// enroll records (or replaces) the peer of the certificate chain[0] with
// key, and adds it to the device and the filter. The lease and record are
// on disk before the device knows the peer.
func (s *Server) enroll(chain []*x509.Certificate, d policy.Decision, key Key) (*record, *apiError) {
	leaf := chain[0]
	fp := fingerprint(leaf)
	name, idKey := identityOf(d, leaf)
	now := time.Now().UTC()

	s.mu.Lock()
	defer s.mu.Unlock()
	if other := s.byKey[key]; other != nil && other.Fingerprint != fp {
		return nil, &apiError{http.StatusConflict, "this WireGuard key is already enrolled with another certificate; generate a new key"}
	}
	old := s.peers[fp]
	if old == nil {
		n := 0
		for _, r := range s.peers {
			// A peer whose certificate expired waits only for its grace
			// period to end: it does not take a device slot.
			if r.IdentityKey == idKey && (r.NotAfter.IsZero() || now.Before(r.NotAfter)) {
				n++
			}
		}
		if n >= s.cfg.MaxPeersPerIdentity {
			return nil, &apiError{http.StatusForbidden, fmt.Sprintf("device limit reached: %d devices are enrolled for your account; unenroll one (DELETE /v1/me with its certificate) or ask IT", n)}
		}
	}
	rec := &record{
		Fingerprint: fp,
		CertSerial:  leaf.SerialNumber.Text(16),
		Identity:    name,
		IdentityKey: idKey,
		NotAfter:    leaf.NotAfter,
		PublicKey:   key,
		Rule:        d.Rule,
		Access:      d.VPN,
		Enrolled:    now,
		Updated:     now,
		Validated:   now,
		certs:       chain,
	}
	for _, c := range chain {
		rec.Chain = append(rec.Chain, c.Raw)
	}
	if old != nil {
		rec.offset, rec.Enrolled = old.offset, old.Enrolled
	}
	// A shared store may refuse the address another node leased meanwhile
	// (the database keeps one lease per address): mark it held and take
	// the next free one, a bounded number of times.
	for attempt := 0; ; attempt++ {
		if old == nil {
			o, ok := s.pool.allocate(fp)
			if !ok {
				s.log.Error("vpn: address pool exhausted", "pool", s.cfg.pool.String())
				return nil, &apiError{http.StatusServiceUnavailable, "no tunnel address available; try again later or contact IT"}
			}
			rec.offset = o
		}
		rec.Address, rec.Address6 = s.pool.addrs(rec.offset)
		var err error
		if old == nil {
			err = s.store.saveNew(rec, s.cfg.MaxPeersPerIdentity)
		} else {
			err = s.store.save(rec)
		}
		if err == nil {
			break
		}
		if le := (*LimitError)(nil); errors.As(err, &le) {
			// Another node enrolled a device of this identity meanwhile.
			s.pool.release(rec.offset)
			return nil, &apiError{http.StatusForbidden, fmt.Sprintf("device limit reached: %d devices are enrolled for your account; unenroll one (DELETE /v1/me with its certificate) or ask IT", le.Count)}
		}
		var ce *ConflictError
		switch {
		case errors.As(err, &ce) && ce.Field == "address" && old == nil && attempt < 16:
			s.log.Debug("vpn: enrollment: address leased by another node; taking the next", "address", rec.Address.String())
			s.pool.used[rec.offset] = heldElsewhere // until the other node's record arrives
			continue
		case errors.As(err, &ce) && ce.Field == "public_key":
			err = nil
		}
		if old == nil {
			s.pool.release(rec.offset)
		}
		switch {
		case ce != nil && ce.Field == "public_key":
			return nil, &apiError{http.StatusConflict, "this WireGuard key is already enrolled with another certificate; generate a new key"}
		case errors.Is(err, ErrUnavailable):
			s.log.Error("vpn: enrollment: peer registry unavailable", "err", err)
			return nil, &apiError{http.StatusServiceUnavailable, "the VPN registry is unavailable, so no new device can be enrolled right now; connected devices keep working; try again in a minute"}
		}
		s.log.Error("vpn: enrollment", "err", err)
		return nil, &apiError{http.StatusInternalServerError, "internal error; try again later"}
	}
	var w uapiWriter
	if old != nil && old.PublicKey != key {
		w.removePeer(old.PublicKey)
	}
	w.addPeer(key, rec.addrs()...)
	if err := s.apply(&w); err != nil {
		s.log.Error("vpn: enrollment: device", "err", err)
		// Roll back to the state before this request.
		if old == nil {
			if s.store.remove(fp) == nil {
				s.pool.release(rec.offset)
			}
		} else {
			var back uapiWriter
			back.removePeer(key)
			back.addPeer(old.PublicKey, old.addrs()...)
			s.apply(&back)
			s.store.save(old)
		}
		return nil, &apiError{http.StatusInternalServerError, "internal error; try again later"}
	}
	s.filter.Update(func(u *filter.Update) { u.Set(rec.Access, rec.addrs()...) })
	if old != nil {
		delete(s.byKey, old.PublicKey)
	}
	rec.seen = time.Now()
	s.peers[fp] = rec
	s.byKey[key] = rec
	s.log.Info("vpn: enrolled", "identity", name, "rule", d.Rule, "address", rec.Address.String(),
		"fingerprint", fp, "replaced", old != nil)
	return rec, nil
}

// removePeer cuts a peer off (device and filter first), then forgets it and
// frees its lease. It reports whether the peer existed. A shared store that
// cannot be reached refuses the removal (ErrUnavailable) and nothing
// changes: cut here only, the peer would come back from the store.
func (s *Server) removePeer(fp, why string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.peers[fp]
	if r == nil {
		return false, nil
	}
	if err := s.storeRemoveFirst(fp); err != nil {
		return true, err
	}
	var ops filterOps
	s.removeLocked(r, why, &ops)
	s.flushLocked(&ops)
	return true, nil
}

// storeRemoveFirst deletes fp's stored record before the peer is cut when
// the store may be unreachable (a shared one); then removeLocked's own
// delete is a no-op.
func (s *Server) storeRemoveFirst(fp string) error {
	if err := s.store.remove(fp); errors.Is(err, ErrUnavailable) {
		s.log.Error("vpn: remove peer: registry unavailable; nothing removed", "fingerprint", fp, "err", err)
		return err
	}
	return nil
}

// filterOps collects filter changes so that many apply in one swap.
// Leases of removed peers are freed only when their filter entries are gone,
// so a new peer never inherits a stale entry.
type filterOps struct {
	sets    []filterSet
	dels    []netip.Addr
	release []uint32 // pool offsets to free after the swap
}

type filterSet struct {
	access *policy.VPNAccess
	addrs  []netip.Addr
}

func (o *filterOps) set(a *policy.VPNAccess, addrs []netip.Addr) {
	o.sets = append(o.sets, filterSet{a, addrs})
}

// flushLocked applies ops to the filter in one swap and frees the leases.
// s.mu must be held.
func (s *Server) flushLocked(o *filterOps) {
	if len(o.sets) > 0 || len(o.dels) > 0 {
		s.filter.Update(func(u *filter.Update) {
			u.Remove(o.dels...)
			for _, x := range o.sets {
				u.Set(x.access, x.addrs...)
			}
		})
	}
	for _, off := range o.release {
		s.pool.release(off)
	}
	o.sets, o.dels, o.release = o.sets[:0], o.dels[:0], o.release[:0]
}

func (s *Server) flush(o *filterOps) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked(o)
}

// removeLocked removes r from the device at once; its filter entries go with
// ops. s.mu must be held.
func (s *Server) removeLocked(r *record, why string, ops *filterOps) {
	var w uapiWriter
	w.removePeer(r.PublicKey)
	if err := s.apply(&w); err != nil {
		s.log.Error("vpn: remove peer: device", "err", err)
	}
	ops.dels = append(ops.dels, r.addrs()...)
	if err := s.store.remove(r.Fingerprint); err != nil {
		// The lease stays held so it cannot be handed out twice; the
		// stored record is retried at the next re-validation or restart.
		s.log.Error("vpn: remove peer", "err", err)
	} else {
		ops.release = append(ops.release, r.offset)
	}
	delete(s.peers, r.Fingerprint)
	delete(s.byKey, r.PublicKey)
	s.log.Info("vpn: peer removed", "identity", r.Identity, "address", r.Address.String(), "fingerprint", r.Fingerprint, "why", why)
}

// Revalidate authorizes every peer's stored chain again, through the
// re-validation engine (package policy/reval), and returns what it did:
//
//   - allowed: a changed rule or access updates the filter in place
//     (AllowedIPs stay); a suspended peer is restored to the device and
//     the filter by itself;
//   - denied (certificate revoked or expired, or — unless the mass-cut guard
//     holds them — policy reasons): the peer is suspended: removed from
//     the device and the filter, its record and lease kept with the code
//     and reason, so a later allowing run restores it;
//   - undecided (directory or revocation status unavailable, no policy,
//     timeout): nothing changes; the peer keeps the access it has.
//
// A record is deleted only by its holder (DELETE /v1/me), an admin
// (RemovePeers) or here, once its certificate expired more than
// ExpiredGrace ago. cmd triggers a run after a policy reload
// (TriggerRevalidate); Run runs one every RevalidateEvery. Runs do not
// overlap.
func (s *Server) Revalidate(ctx context.Context) reval.Report {
	s.revalMu.Lock()
	defer s.revalMu.Unlock()
	return s.revalidateLocked(ctx)
}

// revalidateLocked is Revalidate with revalMu held.
func (s *Server) revalidateLocked(ctx context.Context) reval.Report {
	s.trigger.Start()
	if lead := s.leader.Load(); lead != nil && !(*lead)() {
		// Another node of the site re-validates (and cuts) its peers;
		// its changes reach this node through the store.
		rep := reval.Report{Door: policy.DoorVPN}
		s.lastReport.Store(&rep)
		return rep
	}
	s.mu.Lock()
	items := make([]reval.Item[*record], 0, len(s.peers))
	for _, r := range s.peers {
		items = append(items, reval.Item[*record]{V: r, Live: r.Suspended == nil})
	}
	s.mu.Unlock()
	var ops filterOps
	defer s.flush(&ops)
	now := time.Now()
	rep := reval.Run(ctx, s.engine, policy.DoorVPN, items, func(ctx context.Context, r *record) policy.Decision {
		chain, err := r.chain()
		switch {
		case err != nil:
			return policy.Decision{Code: policy.CodeUntrusted, Reason: "stored chain unreadable"}
		case !r.NotAfter.IsZero() && now.After(r.NotAfter):
			// Whatever the authorizer says: the certificate is over.
			return policy.Decision{Code: policy.CodeExpired, Reason: "certificate expired " + r.NotAfter.UTC().Format(time.RFC3339)}
		}
		return s.auth.Authorize(ctx, chain)
	}, func(ctx context.Context, r *record, o reval.Outcome) {
		s.mu.Lock()
		if s.peers[r.Fingerprint] != r { // replaced or removed meanwhile
			s.mu.Unlock()
			return
		}
		var snap *PeerRecord
		if s.actLocked(r, &o, now, &ops) {
			r.seen = time.Now()
			snap = r.stored()
		}
		if len(ops.sets)+len(ops.dels) >= 256 {
			s.flushLocked(&ops)
		}
		s.mu.Unlock()
		if snap != nil {
			s.persist(r, snap)
		}
	})
	s.lastReport.Store(&rep)
	s.log.Debug("vpn: revalidated", "report", rep.String())
	return rep
}

// persist writes snap, r's state as an act left it, without holding s.mu
// (writes are durable, so slow; acts run in parallel). If r was replaced
// or removed while it was written, the registry's current state is
// written again so the store never keeps the stale one.
func (s *Server) persist(r *record, snap *PeerRecord) {
	if err := s.store.Save(snap); err != nil {
		s.log.Error("vpn: revalidate: save peer", "identity", r.Identity, "err", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch cur := s.peers[r.Fingerprint]; {
	case cur == r:
	case cur != nil:
		if err := s.store.save(cur); err != nil {
			s.log.Error("vpn: revalidate: save peer", "identity", cur.Identity, "err", err)
		}
	default:
		if err := s.store.remove(r.Fingerprint); err != nil {
			s.log.Error("vpn: revalidate: remove peer", "identity", r.Identity, "err", err)
		}
	}
}

// actLocked applies one re-validation outcome to r and reports whether r's
// stored record must be written. s.mu must be held.
func (s *Server) actLocked(r *record, o *reval.Outcome, now time.Time, ops *filterOps) bool {
	d := &o.Decision
	start := time.Now()
	if !r.NotAfter.IsZero() && now.After(r.NotAfter.Add(s.cfg.expiredGrace)) {
		s.removeLocked(r, "certificate expired "+r.NotAfter.UTC().Format(time.RFC3339)+" and the grace period passed", ops)
		s.audit("revalidate", netip.AddrPort{}, r.Address, d, false, "removed: certificate expired and grace period passed", start)
		return false
	}
	switch {
	case o.Class == reval.Transient:
		s.log.Debug("vpn: cannot re-validate peer; its access stays as it is", "identity", r.Identity,
			"suspended", r.Suspended != nil, "code", d.Code.String(), "reason", d.Reason)
	case o.Held:
		s.log.Debug("vpn: peer's cut held by the mass-cut guard", "identity", r.Identity, "code", d.Code.String())
	case o.Cut():
		if r.Suspended != nil && r.Suspended.Code == d.Code.String() && r.Suspended.Reason == d.Reason {
			return false
		}
		was := r.Suspended != nil
		since := now.UTC()
		if was {
			since = r.Suspended.Since
		}
		r.Suspended = &Suspension{Since: since, Code: d.Code.String(), Reason: d.Reason}
		s.suspendLocked(r, was, ops)
		if !was {
			s.audit("revalidate", netip.AddrPort{}, r.Address, d, false, "suspended: "+d.Reason, start)
		}
		return true
	default: // allowed
		r.Validated = now.UTC()
		restored := r.Suspended != nil
		if !restored && r.Rule == d.Rule && r.Access == d.VPN {
			return false
		}
		persist := restored || r.Rule != d.Rule || !sameAccess(r.Access, d.VPN)
		r.Rule, r.Access = d.Rule, d.VPN
		if restored {
			var w uapiWriter
			w.addPeer(r.PublicKey, r.addrs()...)
			if err := s.apply(&w); err != nil {
				s.log.Error("vpn: restore peer: device", "identity", r.Identity, "err", err)
				return false // still suspended; retried next run
			}
			r.Suspended = nil
		}
		ops.set(r.Access, r.addrs())
		if persist {
			r.Updated = r.Validated
			if restored {
				s.log.Info("vpn: peer restored", "identity", r.Identity, "rule", r.Rule, "address", r.Address.String())
				s.audit("revalidate", netip.AddrPort{}, r.Address, d, true, "restored", start)
			} else {
				s.log.Info("vpn: peer access changed", "identity", r.Identity, "rule", r.Rule)
				s.audit("revalidate", netip.AddrPort{}, r.Address, d, true, "access changed", start)
			}
		}
		return persist
	}
	return false
}

// suspendLocked takes r (whose Suspended is set) off the device and out of
// the filter; its lease stays; the caller persists it. again is set when r
// was suspended already (only the reason changed). s.mu must be held.
func (s *Server) suspendLocked(r *record, again bool, ops *filterOps) {
	if !again {
		var w uapiWriter
		w.removePeer(r.PublicKey)
		if err := s.apply(&w); err != nil {
			s.log.Error("vpn: suspend peer: device", "err", err)
		}
		ops.dels = append(ops.dels, r.addrs()...)
		s.log.Warn("vpn: peer suspended", "identity", r.Identity, "address", r.Address.String(),
			"fingerprint", r.Fingerprint, "code", r.Suspended.Code, "reason", r.Suspended.Reason)
	}
}

// TriggerRevalidate asks Run's loop for a re-validation soon and returns at
// once; triggers that arrive while one is pending coalesce into it, and a
// trigger is served by any run that starts after it (Revalidate called by
// `gatehouse reload` included), so none is run twice.
func (s *Server) TriggerRevalidate() {
	s.trigger.Fire()
}

// revalidateTriggered runs unless every trigger so far was served by a run
// that started after it.
func (s *Server) revalidateTriggered(ctx context.Context) {
	s.revalMu.Lock()
	defer s.revalMu.Unlock()
	if s.trigger.Pending() {
		s.revalidateLocked(ctx)
	}
}

// LastRevalidation returns the report of the latest run (zero before the first).
func (s *Server) LastRevalidation() reval.Report {
	if r := s.lastReport.Load(); r != nil {
		return *r
	}
	return reval.Report{Door: policy.DoorVPN}
}

// RemovePeers deletes, as an admin asked, every peer whose certificate
// fingerprint, identity, or tunnel address (IPv4 or IPv6) is match: off
// the device and the filter, record deleted, lease freed. It returns a
// line per removed peer; none matching is an error.
func (s *Server) RemovePeers(match string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ops filterOps
	var out []string
	for _, r := range s.peers {
		if !matchPeer(match, r.Fingerprint, r.Identity, r.Address, r.Address6) {
			continue
		}
		if err := s.storeRemoveFirst(r.Fingerprint); err != nil {
			s.flushLocked(&ops)
			return out, fmt.Errorf("vpn: remove peers: the VPN registry is unavailable; %d removed before it failed: %w", len(out), err)
		}
		s.removeLocked(r, "removed by an admin", &ops)
		out = append(out, fmt.Sprintf("removed %s (%s, %s)", r.Identity, r.Address, r.Fingerprint))
	}
	s.flushLocked(&ops)
	if len(out) == 0 {
		return nil, fmt.Errorf("vpn: remove peers: no peer matches %q", match)
	}
	sort.Strings(out)
	return out, nil
}

func matchPeer(match, fp, identity string, a4, a6 netip.Addr) bool {
	if match == "" {
		return false
	}
	if match == fp || match == identity {
		return true
	}
	a, err := netip.ParseAddr(match)
	return err == nil && (a == a4 || (a6.IsValid() && a == a6))
}

// RemoveFromStore is RemoveStoredPeers for another Store (the shared
// registry): the matching records are removed through it.
func RemoveFromStore(st Store, match string) ([]string, error) {
	recs, _, err := st.Load()
	if err != nil {
		return nil, err
	}
	return removeMatching(recs, st.Remove, match)
}

// RemoveStoredPeers is RemovePeers for when no server runs: it deletes the
// matching records of the registry in stateDir directly (each file removed
// and the directory synced). Undecodable records are left alone.
func RemoveStoredPeers(stateDir, match string) ([]string, error) {
	st := NewFileStore(filepath.Join(stateDir, "peers"))
	recs, _, err := st.Read()
	if err != nil {
		return nil, err
	}
	return removeMatching(recs, st.Remove, match)
}

// removeMatching removes the records that match (fingerprint, identity or
// address) with remove, and says what it removed.
func removeMatching(recs []*PeerRecord, remove func(fp string) error, match string) ([]string, error) {
	var out []string
	for _, r := range recs {
		if !matchPeer(match, r.Fingerprint, r.Identity, r.Address, r.Address6) {
			continue
		}
		if err := remove(r.Fingerprint); err != nil {
			return out, err
		}
		out = append(out, fmt.Sprintf("removed %s (%s, %s)", r.Identity, r.Address, r.Fingerprint))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("vpn: remove peers: no peer matches %q", match)
	}
	sort.Strings(out)
	return out, nil
}
