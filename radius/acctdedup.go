package radius

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash/maphash"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Accounting record de-duplication, per client (the matched
// [[radius.client]] or [[radius.radsec_client]]), across connections and
// source ports.
//
// The reply cache (RFC 5080 2.2.2) knows a retransmission by its source,
// Identifier and Request Authenticator, and over RadSec by its connection
// too. An access point whose RadSec connection drops resends its
// unacknowledged records on a new connection, often with a new Identifier
// and a larger Acct-Delay-Time (hence a new authenticator); a UDP NAS that
// changes source port after a reboot or a proxy failover does the same.
// Each of those is the same record, and writing it again would count the
// session (and its octets) twice.
//
// So a record is known by its identity: a 128-bit hash of the client
// (its entry) and of every attribute of the request except the three a
// retransmission may change — Acct-Delay-Time (RFC 2866 5.2), Proxy-State
// (each proxy hop adds its own) and Message-Authenticator — taken as a
// multiset (attribute order does not matter). The Identifier and the
// authenticator are not part of it. Everything else is: Acct-Status-Type,
// Acct-Session-Id, the NAS's identity, Event-Timestamp, and the counters
// (Acct-Session-Time, octets, packets, gigawords) and any attribute that
// changes between two genuine Interim-Updates. Two requests with the same
// identity carry the same information; a genuinely new record differs in
// at least one attribute — an Interim-Update in its counters or session
// time, an updated "retransmission" (RFC 5080 erratum 4623: new counters,
// Acct-Delay-Time 0, new Event-Timestamp) likewise — and is recorded.
//
// The identity is used only when the request says which event it reports:
// it has a (non-empty) Acct-Session-Id or an Event-Timestamp. Without either (an
// Accounting-On from a NAS that sends neither), two reboots a minute apart
// would look alike, so such a request is known by its exact bytes and
// source (as the reply cache knows it) and only a true retransmission is
// caught. A request with no NAS-IP-Address, NAS-IPv6-Address or
// NAS-Identifier (RFC 2866 requires one) has its source address (not the
// port) in its identity, so that two access points behind one
// [[radius.client]] network never merge.
//
// A duplicate is answered (a fresh Accounting-Response to its own
// Identifier, Proxy-State echoed) and not recorded again, and counted
// (Stats.AccountingDuplicates, per client). One that arrives while the
// record is still being committed waits for that commit and is answered
// with it, or dropped with it if the write fails (then nothing is recorded
// and nothing remembered: the next retransmission is written once).
//
// Bounds: a record is remembered for acctSeenTTL (5 minutes) after it was
// recorded, and at most acctSeenMax (131,072) records are remembered, the
// oldest forgotten first — about 80 bytes each, 10.6 MB when full
// (measured), shared by all clients; records being committed are at most
// the commit queue. At more than acctSeenMax/acctSeenTTL (about 430) records
// a second the window is shorter than 5 minutes. Lookups are one hash of
// the request and one map access; in the steady state they allocate
// nothing.

const (
	acctSeenTTL = 5 * time.Minute
	acctSeenMax = 1 << 17 // records remembered; the oldest go first
)

// acctID is a record's identity: two independently seeded 64-bit hashes.
type acctID [2]uint64

// Attribute types only the identity uses (Event-Timestamp: coa.go).
const (
	attrAcctDelayTime  = 41
	attrNASIPv6Address = 95
)

// identityAttrs calls f with each attribute of Accounting-Request p that
// a record's identity takes (all but Acct-Delay-Time, Proxy-State and
// Message-Authenticator) and reports whether p names its event (a
// non-empty Acct-Session-Id or Event-Timestamp) and its NAS.
func identityAttrs(p packet, f func(attr []byte)) (event, nasID bool) {
	for b := p.attrs(); len(b) >= 2; {
		l := int(b[1])
		attr := b[:l]
		b = b[l:]
		switch attr[0] {
		case attrAcctDelayTime, attrProxyState, attrMessageAuthenticator:
			continue
		case attrAcctSessionID, attrEventTimestamp:
			event = event || l > 2
		case attrNASIPAddress, attrNASIPv6Address, attrNASIdentifier:
			nasID = nasID || l > 2
		}
		f(attr)
	}
	return event, nasID
}

// identity computes the identity of Accounting-Request p from client n,
// received from src (on RadSec connection cid, 0 for UDP).
func (a *acctSeen) identity(n *nas, p packet, src netip.AddrPort, cid uint64) acctID {
	var id acctID
	event, nasID := identityAttrs(p, func(attr []byte) {
		id[0] += maphash.Bytes(a.seed[0], attr)
		id[1] += maphash.Bytes(a.seed[1], attr)
	})
	// The tail: what else the identity depends on, tagged by its first
	// byte so that it is never taken for an attribute (type 0 is reserved).
	var tail [1 + 8 + 1 + 16 + 2 + 8 + 1 + 16]byte
	t := binary.BigEndian.AppendUint64(tail[:1], uint64(n.idx)) // the client
	if !event {
		// No event named: the exact request (source, connection,
		// Identifier, Request Authenticator).
		t = append(t, 1)
		a16 := src.Addr().As16()
		t = append(t, a16[:]...)
		t = binary.BigEndian.AppendUint16(t, src.Port())
		t = binary.BigEndian.AppendUint64(t, cid)
		t = append(t, p.id())
		t = append(t, p.auth()...)
	} else if !nasID {
		t = append(t, 2)
		a16 := src.Addr().Unmap().As16()
		t = append(t, a16[:]...)
	}
	id[0] += maphash.Bytes(a.seed[0], t)
	id[1] += maphash.Bytes(a.seed[1], t)
	return id
}

// recordID names a record's identity the same way on every node (the
// identity above is seeded per process): 32 hex digits of SHA-256 over the
// client entry's name, the sorted SHA-256 digests of the attributes the
// identity takes, and the source address when no attribute names the NAS.
// It goes into the record (record_id), and the PostgreSQL store keeps one
// row per record_id, so a record an access point resent to another node
// (failover) is stored once. "" when the request names no event: such a
// record is only ever known by its exact request, on one node.
func recordID(n *nas, p packet, src netip.AddrPort) string {
	var buf [32][sha256.Size]byte
	ds := buf[:0]
	event, nasID := identityAttrs(p, func(attr []byte) { ds = append(ds, sha256.Sum256(attr)) })
	if !event {
		return ""
	}
	slices.SortFunc(ds, func(a, b [sha256.Size]byte) int { return bytes.Compare(a[:], b[:]) })
	h := sha256.New()
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(n.name)))
	h.Write(l[:])
	h.Write([]byte(n.name))
	for i := range ds {
		h.Write(ds[i][:])
	}
	if !nasID {
		a16 := src.Addr().Unmap().As16()
		h.Write(a16[:])
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// seenSlot is one remembered record in insertion order.
type seenSlot struct {
	id acctID
	at int64 // unix nanoseconds: when it was recorded
}

// acctSeen remembers the records recently recorded, and those being
// recorded, by identity.
type acctSeen struct {
	seed [2]maphash.Seed // set once by init

	mu   sync.Mutex          // guards the fields below
	m    map[acctID]int64    // recorded: when (unix nanoseconds)
	busy map[acctID]*acctReq // being committed: by which request (at most acctQueue+acctBatchMax)
	ring []seenSlot          // m in insertion order, oldest at head; grows to acctSeenMax
	head int
	n    int
}

func (a *acctSeen) init() {
	a.seed = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
	a.m = make(map[acctID]int64)
	a.busy = make(map[acctID]*acctReq)
}

type seenState uint8

const (
	seenNew      seenState = iota // claimed: the caller records it
	seenRecorded                  // recorded within acctSeenTTL: answer only
	seenBusy                      // being committed: req waits for the owner
)

// recorded reports whether id was recorded within acctSeenTTL.
func (a *acctSeen) recorded(id acctID, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.m[id]
	return ok && now.UnixNano()-at < int64(acctSeenTTL)
}

// claim marks id as being recorded by req (seenNew); if it is being
// recorded by another request, req joins that request's duplicates
// (seenBusy) and is answered with it; seenRecorded if it was recorded
// meanwhile.
func (a *acctSeen) claim(id acctID, req *acctReq, now time.Time) seenState {
	a.mu.Lock()
	defer a.mu.Unlock()
	if owner := a.busy[id]; owner != nil {
		req.dup, req.line, req.pkt = true, nil, nil
		owner.dups = append(owner.dups, req)
		return seenBusy
	}
	if at, ok := a.m[id]; ok && now.UnixNano()-at < int64(acctSeenTTL) {
		return seenRecorded
	}
	a.busy[id] = req
	return seenNew
}

// done ends req's claim on id: remembered as recorded at now if ok,
// forgotten otherwise. It returns the duplicates that waited for req.
func (a *acctSeen) done(id acctID, req *acctReq, ok bool, now time.Time) []*acctReq {
	a.mu.Lock()
	defer a.mu.Unlock()
	dups := req.dups
	req.dups = nil
	if a.busy[id] == req {
		delete(a.busy, id)
	}
	if ok {
		a.insertLocked(id, now.UnixNano())
	}
	return dups
}

func (a *acctSeen) insertLocked(id acctID, at int64) {
	for a.n > 0 && at-a.ring[a.head].at >= int64(acctSeenTTL) {
		a.popLocked()
	}
	if a.n == acctSeenMax {
		a.popLocked()
	}
	a.m[id] = at
	slot := seenSlot{id: id, at: at}
	if a.n < len(a.ring) {
		a.ring[(a.head+a.n)%len(a.ring)] = slot
	} else { // full below acctSeenMax: grow, oldest first
		if a.head != 0 {
			a.ring, a.head = slices.Concat(a.ring[a.head:], a.ring[:a.head]), 0
		}
		a.ring = append(a.ring, slot)
	}
	a.n++
}

// popLocked forgets the oldest slot (and its record, unless the record
// was recorded again since).
func (a *acctSeen) popLocked() {
	s := a.ring[a.head]
	if at, ok := a.m[s.id]; ok && at == s.at {
		delete(a.m, s.id)
	}
	a.ring[a.head] = seenSlot{}
	a.head = (a.head + 1) % len(a.ring)
	a.n--
}

// len returns how many records are remembered.
func (a *acctSeen) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.m)
}
