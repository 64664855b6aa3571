package vpn

import "time"

// heldElsewhere marks, in the pool, an address a shared store said another
// node leased before this node saw that node's record.
const heldElsewhere = "?"

// Replication: with a shared Store (PostgreSQL) every node of a site
// configures every peer of the site. A node learns the changes the others
// made through Apply and Forget (one record, on a notification) and Sync
// (the whole registry, after a reconnect and periodically, so a missed
// notification delays a change but never loses it). All three reuse the
// local paths: device first, then the filter, then the maps.
//
// Each takes asOf, the time (on this node's clock) just before the caller
// read the store: a record this node took in after asOf (its own
// enrollment racing the read) is newer than what was read, and kept.

// SetLeader makes re-validation run only while lead returns true: with a
// shared store, one node of a site re-validates its peers and writes the
// cuts, the others apply them as replicated changes. Call it before Run;
// without it (one node) every run re-validates.
func (s *Server) SetLeader(lead func() bool) {
	if lead != nil {
		s.leader.Store(&lead)
	}
}

// Apply takes in p, a record as another node (or this one) stored it: a
// new peer is added to the device and the filter, a changed one updated
// (key, access, suspension), a suspended one taken off.
func (s *Server) Apply(p *PeerRecord, asOf time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ops filterOps
	s.applyLocked(p, asOf, &ops)
	s.flushLocked(&ops)
}

// Forget drops the peer fp another node removed: off the device and the
// filter, lease freed. The store is not touched.
func (s *Server) Forget(fp string, asOf time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.peers[fp]
	if r == nil || r.seen.After(asOf) {
		return
	}
	var ops filterOps
	s.forgetLocked(r, &ops)
	s.flushLocked(&ops)
}

// Sync makes the registry equal to recs, the whole registry as read from
// the store at asOf, and returns how many peers it added, changed and
// removed.
func (s *Server) Sync(recs []*PeerRecord, asOf time.Time) (changed, removed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ops filterOps
	in := make(map[string]bool, len(recs))
	for _, p := range recs {
		in[p.Fingerprint] = true
		if s.applyLocked(p, asOf, &ops) {
			changed++
		}
		if len(ops.sets)+len(ops.dels) >= 4096 {
			s.flushLocked(&ops)
		}
	}
	for fp, r := range s.peers {
		if !in[fp] && !r.seen.After(asOf) {
			s.forgetLocked(r, &ops)
			removed++
		}
	}
	s.flushLocked(&ops)
	// Addresses marked held by another node whose record never came.
	for o, h := range s.pool.used {
		if h == heldElsewhere {
			s.pool.release(o)
		}
	}
	return changed, removed
}

// same reports whether r already is what p stores.
func same(r *record, p *PeerRecord) bool {
	if r.PublicKey != p.PublicKey || r.Address != p.Address || r.Rule != p.Rule ||
		!r.Updated.Equal(p.Updated) || (r.Suspended == nil) != (p.Suspended == nil) {
		return false
	}
	if r.Suspended != nil && *r.Suspended != *p.Suspended {
		return false
	}
	return sameAccess(r.Access, p.Access.access())
}

// applyLocked takes in p; it reports whether anything changed. s.mu must
// be held.
func (s *Server) applyLocked(p *PeerRecord, asOf time.Time, ops *filterOps) bool {
	old := s.peers[p.Fingerprint]
	if old != nil && (old.seen.After(asOf) || same(old, p)) {
		return false
	}
	o, ok := s.pool.offset(p.Address)
	if !ok || o < s.pool.first() || o > s.pool.last() {
		s.log.Error("vpn: replicated peer's address is outside this node's pool; the nodes of a site must have the same address_pool",
			"fingerprint", p.Fingerprint, "address", p.Address.String())
		return false
	}
	// What this node holds that the store gave to p is stale: the store
	// keeps one lease per address and key.
	if h, taken := s.pool.used[o]; taken && h != p.Fingerprint {
		if other := s.peers[h]; other != nil {
			s.forgetLocked(other, ops)
		}
		s.flushLocked(ops) // the address's filter entry goes before p's comes
		delete(s.pool.used, o)
	}
	if other := s.byKey[p.PublicKey]; other != nil && other.Fingerprint != p.Fingerprint {
		s.forgetLocked(other, ops)
		s.flushLocked(ops)
	}
	r := recordOf(p)
	r.offset = o
	r.Address, r.Address6 = s.pool.addrs(o)
	r.seen = time.Now()
	var w uapiWriter
	if old != nil {
		if old.Suspended == nil && (old.PublicKey != r.PublicKey || r.Suspended != nil) {
			w.removePeer(old.PublicKey)
		}
		if old.offset != o || r.Suspended != nil {
			ops.dels = append(ops.dels, old.addrs()...)
		}
		if old.offset != o {
			s.flushLocked(ops)
			s.pool.release(old.offset)
		}
		delete(s.byKey, old.PublicKey)
	}
	if r.Suspended == nil {
		w.addPeer(r.PublicKey, r.addrs()...)
		ops.set(r.Access, r.addrs())
	}
	if err := s.apply(&w); err != nil {
		s.log.Error("vpn: replicated peer: device", "fingerprint", p.Fingerprint, "err", err)
	}
	s.pool.used[o] = r.Fingerprint
	s.peers[r.Fingerprint] = r
	s.byKey[r.PublicKey] = r
	s.log.Debug("vpn: replicated peer applied", "identity", r.Identity, "address", r.Address.String(),
		"suspended", r.Suspended != nil, "new", old == nil)
	return true
}

// forgetLocked drops r from the device, the filter (through ops) and the
// maps, without touching the store. s.mu must be held.
func (s *Server) forgetLocked(r *record, ops *filterOps) {
	if r.Suspended == nil {
		var w uapiWriter
		w.removePeer(r.PublicKey)
		if err := s.apply(&w); err != nil {
			s.log.Error("vpn: replicated removal: device", "err", err)
		}
	}
	ops.dels = append(ops.dels, r.addrs()...)
	ops.release = append(ops.release, r.offset)
	delete(s.peers, r.Fingerprint)
	delete(s.byKey, r.PublicKey)
	s.log.Debug("vpn: replicated removal applied", "identity", r.Identity, "address", r.Address.String())
}
