package vpn

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/gatehouse/gatehouse/policy"
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
			if r.IdentityKey == idKey {
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
	} else {
		o, ok := s.pool.allocate(fp)
		if !ok {
			s.log.Error("vpn: address pool exhausted", "pool", s.cfg.pool.String())
			return nil, &apiError{http.StatusServiceUnavailable, "no tunnel address available; try again later or contact IT"}
		}
		rec.offset = o
	}
	rec.Address, rec.Address6 = s.pool.addrs(rec.offset)
	if err := s.store.save(rec); err != nil {
		if old == nil {
			s.pool.release(rec.offset)
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
	s.peers[fp] = rec
	s.byKey[key] = rec
	s.log.Info("vpn: enrolled", "identity", name, "rule", d.Rule, "address", rec.Address.String(),
		"fingerprint", fp, "replaced", old != nil)
	return rec, nil
}

// removePeer cuts a peer off (device and filter first), then forgets it and
// frees its lease. It reports whether the peer existed.
func (s *Server) removePeer(fp, why string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.peers[fp]
	if r == nil {
		return false
	}
	var ops filterOps
	s.removeLocked(r, why, &ops)
	s.flushLocked(&ops)
	return true
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

// transient codes suspend a peer's access instead of removing it: the cause
// (directory or CRL outage, no policy) is not the holder's.
func transient(c policy.Code) bool {
	return c == policy.CodeDirectoryUnavailable || c == policy.CodePolicyUnavailable || c == policy.CodeRevocationUnknown
}

// Revalidate authorizes every peer's stored chain again: denied peers are
// removed and their leases freed; a changed rule or access updates the
// filter in place (AllowedIPs stay). A transient failure (directory or
// revocation status unavailable, no policy) suspends the peer's access until
// a later run succeeds. The lead calls it after a policy reload; Run calls it
// every RevalidateEvery.
func (s *Server) Revalidate(ctx context.Context) {
	s.revalMu.Lock()
	defer s.revalMu.Unlock()
	s.mu.Lock()
	recs := make([]*record, 0, len(s.peers))
	for _, r := range s.peers {
		recs = append(recs, r)
	}
	s.mu.Unlock()
	start := time.Now()
	removed, changed := 0, 0
	var ops filterOps
	defer s.flush(&ops)
	for i, r := range recs {
		if i%256 == 255 {
			s.flush(&ops)
		}
		if ctx.Err() != nil {
			return
		}
		rstart := time.Now()
		chain, err := r.chain()
		var d policy.Decision
		switch {
		case err != nil:
			d = policy.Decision{Code: policy.CodeUntrusted, Reason: "stored chain unreadable"}
		case !r.NotAfter.IsZero() && time.Now().After(r.NotAfter):
			// Whatever the authorizer says: the certificate is over.
			d = policy.Decision{Code: policy.CodeExpired, Reason: "certificate expired"}
		default:
			actx, cancel := context.WithTimeout(ctx, 15*time.Second)
			d = s.auth.Authorize(actx, chain)
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		if s.peers[r.Fingerprint] != r { // replaced or removed meanwhile
			s.mu.Unlock()
			continue
		}
		switch {
		case !d.Allowed && transient(d.Code):
			if !r.cut {
				r.cut = true
				ops.set(nil, r.addrs())
				s.log.Warn("vpn: peer suspended", "identity", r.Identity, "code", d.Code.String(), "reason", d.Reason)
				s.audit("revalidate", netip.AddrPort{}, r.Address, &d, false, "suspended: "+d.Reason, rstart)
				changed++
			}
		case !d.Allowed || d.VPN == nil:
			s.removeLocked(r, d.Code.String()+": "+d.Reason, &ops)
			s.audit("revalidate", netip.AddrPort{}, r.Address, &d, false, "removed: "+d.Reason, rstart)
			removed++
		default:
			r.Validated = time.Now().UTC()
			if r.cut || r.Rule != d.Rule || r.Access != d.VPN {
				persist := r.Rule != d.Rule || !sameAccess(r.Access, d.VPN)
				r.cut = false
				r.Rule, r.Access = d.Rule, d.VPN
				ops.set(r.Access, r.addrs())
				if persist {
					r.Updated = r.Validated
					if err := s.store.save(r); err != nil {
						s.log.Error("vpn: revalidate", "err", err)
					}
					s.log.Info("vpn: peer access changed", "identity", r.Identity, "rule", r.Rule)
					s.audit("revalidate", netip.AddrPort{}, r.Address, &d, true, "access changed", rstart)
					changed++
				}
			}
		}
		s.mu.Unlock()
	}
	s.log.Debug("vpn: revalidated", "peers", len(recs), "removed", removed, "changed", changed, "took", time.Since(start))
}
