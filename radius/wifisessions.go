package radius

import (
	"container/list"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"net/netip"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// Live Wi-Fi sessions. Each Access-Accept to a client with dynamic
// authorization gets a Class attribute holding a random token ("gh1."
// followed by 32 hex digits) besides the rule's own Class; the NAS echoes
// every Class in its accounting (RFC 2865 section 5.25), which links the
// accounting session (Acct-Session-Id, Framed-IP) to the certificate chain
// that was authorized. Accounting without the token is matched by
// (client, Acct-Session-Id), then by (client, Calling-Station-Id) and
// User-Name. The table is bounded: an accept without accounting is kept for
// pendingTTL; a session is dropped at Accounting-Stop, at the NAS's
// Accounting-On/Off, and when stale: no accounting for twice the observed
// interim interval (at least staleMin), or — when the NAS sends no interim
// updates — for the rule's Session-Timeout plus sessionGrace, or
// defaultMaxAge without one.
const (
	classPrefix   = "gh1."
	classLen      = len(classPrefix) + 32
	pendingTTL    = 2 * time.Minute
	staleMin      = 2 * time.Minute
	sessionGrace  = 10 * time.Minute
	defaultMaxAge = 24 * time.Hour
)

// sessionInfo is what is known about one Wi-Fi session; copied out of the
// table for use without its lock.
type sessionInfo struct {
	nas       *nas       // the client entry of nasAddr: its secret and CoA port apply
	nasAddr   netip.Addr // source address of the NAS's latest packet of this session
	nasIP     netip.Addr // NAS-IP-Address, if sent
	nasID     string     // NAS-Identifier, if sent
	userName  string     // User-Name as the NAS reports it (accounting; else the Accept's)
	reqUser   string     // User-Name of the Access-Request (outer identity)
	station   string     // Calling-Station-Id
	sessionID string     // Acct-Session-Id; "" until accounting arrives
	framedIP  netip.Addr
	chain     []*x509.Certificate // the verified chain at accept, leaf first
	rule      string
	wifi      policy.WiFi
	accepted  time.Time
}

// liveSession is an entry of the table; all fields are guarded by
// liveTable.mu.
type liveSession struct {
	info       sessionInfo
	token      [16]byte
	lastSeen   time.Time     // accept, then each accounting packet
	interval   time.Duration // between the last two accounting packets, 0 if unknown
	acct       bool          // accounting seen
	stationKey sessionKey    // its key in byStation, if any
	sessionKey sessionKey    // its key in bySession, if any
	elem       *list.Element // in pending or live
}

type sessionKey struct {
	nas *nas
	id  string
}

// liveTable holds the live sessions.
type liveTable struct {
	max int
	// onEnd, when set (a shared store), is told of each session that
	// ended (Accounting-Stop, the NAS's Accounting-On/Off, a disconnect,
	// staleness after accounting, an Accept not sent), under mu: it must
	// not block.
	onEnd func(tok [16]byte)

	mu        sync.Mutex // guards the fields below and every liveSession
	byToken   map[[16]byte]*liveSession
	bySession map[sessionKey]*liveSession // Acct-Session-Id
	byStation map[sessionKey]*liveSession // Calling-Station-Id: the latest accept
	pending   list.List                   // accepts without accounting, newest first
	live      list.List                   // sessions with accounting, most recently heard first
}

func newLiveTable(max int) *liveTable {
	return &liveTable{
		max:       max,
		byToken:   make(map[[16]byte]*liveSession),
		bySession: make(map[sessionKey]*liveSession),
		byStation: make(map[sessionKey]*liveSession),
	}
}

// classToken renders a token as the Class attribute's value.
func classToken(tok *[16]byte) string {
	var b [classLen]byte
	copy(b[:], classPrefix)
	hex.Encode(b[len(classPrefix):], tok[:])
	return string(b[:])
}

// findToken returns the first gatehouse token among p's Class attributes.
func findToken(p packet) (tok [16]byte, ok bool) {
	a := p.attrs()
	for len(a) >= 2 {
		l := int(a[1])
		v := a[2:l]
		a = a[l:]
		if len(v) != classLen || string(v[:len(classPrefix)]) != classPrefix {
			continue
		}
		if _, err := hex.Decode(tok[:], v[len(classPrefix):]); err == nil {
			return tok, true
		}
	}
	return tok, false
}

// accept records an accepted session and returns its Class token.
func (t *liveTable) accept(n *nas, src netip.Addr, p packet, replyUser string, d *policy.Decision, now time.Time) (string, [16]byte, bool) {
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return "", tok, false
	}
	e := &liveSession{token: tok, lastSeen: now, info: sessionInfo{
		nas: n, nasAddr: src.Unmap(), userName: replyUser, chain: d.Chain, rule: d.Rule, wifi: d.WiFi, accepted: now,
	}}
	e.info.fillNAS(p)
	if v, ok := p.attr(attrUserName); ok {
		e.info.reqUser = string(v)
	}
	if e.info.userName == "" {
		e.info.userName = e.info.reqUser
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.byToken) >= t.max {
		victim := t.pending.Back()
		if victim == nil {
			victim = t.live.Back()
		}
		t.removeLocked(victim.Value.(*liveSession))
	}
	t.byToken[tok] = e
	e.elem = t.pending.PushFront(e)
	if e.info.station != "" {
		e.stationKey = sessionKey{n, e.info.station}
		t.byStation[e.stationKey] = e
	}
	return classToken(&tok), tok, true
}

// fillNAS takes the NAS and station attributes a packet carries.
func (i *sessionInfo) fillNAS(p packet) {
	if v, ok := p.attr(attrNASIPAddress); ok && len(v) == 4 {
		i.nasIP = netip.AddrFrom4([4]byte(v))
	}
	if v, ok := p.attr(attrNASIdentifier); ok {
		i.nasID = string(v)
	}
	if v, ok := p.attr(attrCallingStationID); ok {
		i.station = string(v)
	}
}

// forget removes the session of token tok (its Access-Accept was not sent).
func (t *liveTable) forget(tok [16]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.byToken[tok]; e != nil {
		t.endLocked(e)
	}
}

// endLocked removes e and reports its end.
func (t *liveTable) endLocked(e *liveSession) {
	if t.byToken[e.token] != e {
		return
	}
	t.removeLocked(e)
	if t.onEnd != nil {
		t.onEnd(e.token)
	}
}

// adopt inserts a session accepted by another node (its accounting came
// here); false if the token is known already.
func (t *liveTable) adopt(e *liveSession, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byToken[e.token] != nil {
		return false
	}
	for len(t.byToken) >= t.max {
		victim := t.pending.Back()
		if victim == nil {
			victim = t.live.Back()
		}
		t.removeLocked(victim.Value.(*liveSession))
	}
	e.lastSeen = now
	t.byToken[e.token] = e
	e.elem = t.pending.PushFront(e)
	if e.info.station != "" {
		e.stationKey = sessionKey{e.info.nas, e.info.station}
		t.byStation[e.stationKey] = e
	}
	return true
}

// info returns a copy of the session of tok.
func (t *liveTable) info(tok [16]byte) (sessionInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.byToken[tok]; e != nil {
		return e.info, true
	}
	return sessionInfo{}, false
}

// account applies an Accounting-Request from client n at src. It returns
// how the request was linked to a session: "class", "session", "station",
// or "" when it was not.
func (t *liveTable) account(n *nas, src netip.Addr, p packet, now time.Time) (linkedBy string) {
	return t.accountLink(n, src, p, now).by
}

// acctLink is how an Accounting-Request was linked to a session.
type acctLink struct {
	by      string // "class", "session", "station", or "" when not linked
	changed bool   // a Start, or the session's NAS address, Acct-Session-Id or Framed-IP changed
	tok     [16]byte
	info    sessionInfo // after the update, when changed
}

func (t *liveTable) accountLink(n *nas, src netip.Addr, p packet, now time.Time) acctLink {
	status, ok := p.uint32Attr(attrAcctStatusType)
	if !ok {
		return acctLink{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if status == 7 || status == 8 { // Accounting-On/Off: the NAS (re)started, its sessions are gone
		t.removeNASLocked(n, p, src.Unmap())
		return acctLink{}
	}
	if status != 1 && status != 2 && status != 3 {
		return acctLink{}
	}
	e, by := t.matchLocked(n, p)
	if e == nil {
		return acctLink{}
	}
	if status == 2 {
		t.endLocked(e)
		return acctLink{by: by}
	}
	i := &e.info
	before := struct {
		addr, framed netip.Addr
		sid          string
		n            *nas
	}{i.nasAddr, i.framedIP, i.sessionID, i.nas}
	i.nas, i.nasAddr = n, src.Unmap()
	if v, ok := p.attr(attrUserName); ok && len(v) > 0 {
		i.userName = string(v)
	}
	station, nasIP, nasID := i.station, i.nasIP, i.nasID
	i.fillNAS(p)
	if i.station == "" {
		i.station = station
	}
	if !i.nasIP.IsValid() {
		i.nasIP = nasIP
	}
	if i.nasID == "" {
		i.nasID = nasID
	}
	if v, ok := p.attr(attrFramedIPAddress); ok && len(v) == 4 {
		i.framedIP = netip.AddrFrom4([4]byte(v))
	}
	if v, ok := p.attr(attrAcctSessionID); ok && len(v) > 0 {
		i.sessionID = string(v)
		if k := (sessionKey{n, i.sessionID}); k != e.sessionKey {
			if t.bySession[e.sessionKey] == e {
				delete(t.bySession, e.sessionKey)
			}
			if old := t.bySession[k]; old != nil && old != e { // re-authentication took over the session
				t.removeLocked(old)
			}
			e.sessionKey = k
			t.bySession[k] = e
		}
	}
	l := acctLink{by: by, tok: e.token, changed: status == 1 || !e.acct || before.addr != i.nasAddr ||
		before.framed != i.framedIP || before.sid != i.sessionID || before.n != i.nas}
	if l.changed {
		l.info = *i
	}
	if e.acct {
		e.interval = now.Sub(e.lastSeen)
		t.live.MoveToFront(e.elem)
	} else {
		e.acct = true
		t.pending.Remove(e.elem)
		e.elem = t.live.PushFront(e)
	}
	e.lastSeen = now
	return l
}

// matchLocked finds the session an Accounting-Request belongs to.
func (t *liveTable) matchLocked(n *nas, p packet) (*liveSession, string) {
	if tok, ok := findToken(p); ok {
		if e := t.byToken[tok]; e != nil {
			return e, "class"
		}
	}
	sid, _ := p.attr(attrAcctSessionID)
	if len(sid) > 0 {
		if e := t.bySession[sessionKey{n, string(sid)}]; e != nil {
			return e, "session"
		}
	}
	station, _ := p.attr(attrCallingStationID)
	if len(station) == 0 {
		return nil, ""
	}
	e := t.byStation[sessionKey{n, string(station)}]
	if e == nil || (e.info.sessionID != "" && e.info.sessionID != string(sid)) {
		return nil, ""
	}
	if user, ok := p.attr(attrUserName); ok && string(user) != e.info.userName && string(user) != e.info.reqUser {
		return nil, ""
	}
	return e, "station"
}

func (t *liveTable) removeLocked(e *liveSession) {
	if t.byToken[e.token] != e {
		return
	}
	delete(t.byToken, e.token)
	if e.acct {
		t.live.Remove(e.elem)
	} else {
		t.pending.Remove(e.elem)
	}
	if t.bySession[e.sessionKey] == e {
		delete(t.bySession, e.sessionKey)
	}
	if t.byStation[e.stationKey] == e {
		delete(t.byStation, e.stationKey)
	}
}

func (t *liveTable) removeNASLocked(n *nas, p packet, src netip.Addr) {
	var from sessionInfo // the NAS that sent p
	from.fillNAS(p)
	for _, e := range t.byToken {
		if e.info.nas == n && e.info.sameNAS(&from, src) {
			t.endLocked(e)
		}
	}
}

// sameNAS reports whether the session was served by the NAS of from (the
// NAS attributes of its Accounting-On/Off) sent from src. A client entry
// may cover many access points, and an Accounting-On/Off speaks for its
// sender only: NAS-IP-Address decides when both carry one, else
// NAS-Identifier, else the source address.
func (i *sessionInfo) sameNAS(from *sessionInfo, src netip.Addr) bool {
	switch {
	case from.nasIP.IsValid() && i.nasIP.IsValid():
		return i.nasIP == from.nasIP
	case from.nasID != "" && i.nasID != "":
		return i.nasID == from.nasID
	default:
		return i.nasAddr == src
	}
}

// remove drops e if it is still in the table.
func (t *liveTable) remove(e *liveSession) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.endLocked(e)
}

// update records a new rule and Wi-Fi attributes for e.
func (t *liveTable) update(e *liveSession, rule string, wf policy.WiFi) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e.info.rule, e.info.wifi = rule, wf
}

// expire drops stale sessions; it returns how many.
func (t *liveTable) expire(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for el := t.pending.Back(); el != nil; el = t.pending.Back() {
		e := el.Value.(*liveSession)
		if now.Sub(e.lastSeen) < pendingTTL {
			break
		}
		t.removeLocked(e)
		n++
	}
	for el := t.live.Back(); el != nil; {
		e := el.Value.(*liveSession)
		el = el.Prev()
		if now.Sub(e.lastSeen) > e.staleAfter() {
			t.endLocked(e)
			n++
		}
	}
	return n
}

func (e *liveSession) staleAfter() time.Duration {
	if e.interval > 0 {
		return max(2*e.interval, staleMin)
	}
	if st := e.info.wifi.SessionTimeout; st > 0 {
		return st + sessionGrace
	}
	return defaultMaxAge
}

// liveRef is a session and a copy of its information.
type liveRef struct {
	e    *liveSession
	info sessionInfo
}

// snapshot copies every session, pending ones included: a NAS that sends
// no accounting can still be asked to disconnect by User-Name and
// Calling-Station-Id.
func (t *liveTable) snapshot() []liveRef {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]liveRef, 0, len(t.byToken))
	for _, l := range []*list.List{&t.live, &t.pending} {
		for el := l.Front(); el != nil; el = el.Next() {
			e := el.Value.(*liveSession)
			out = append(out, liveRef{e, e.info})
		}
	}
	return out
}

func (t *liveTable) len() (pending, live int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending.Len(), t.live.Len()
}
