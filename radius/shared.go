package radius

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// Several nodes. With a shared store (Server.SetShared) the Wi-Fi
// sessions and, by Config.Accounting, the accounting records go to a
// durable local spool that a replayer pushes to the store (PostgreSQL):
// the login and accounting paths never wait on the database, so an outage
// of it stops neither.
//
//   - An Access-Accept's session record (Class token, NAS, station, rule,
//     certificate chain) is handed to a spool writer goroutine without
//     waiting: it is as durable as today's in-memory table, and reaches
//     the store a moment later. Accounting that links it (Start, a new
//     Acct-Session-Id or NAS address) updates it; Accounting-Stop and a
//     disconnect end it.
//   - An accounting record is acknowledged once it is in the spool
//     (fsynced, like the file), in "store" and "both" modes.
//   - Accounting that carries a gatehouse Class token this node does not
//     know (the session was accepted by another node: the access point
//     failed over, or sends accounting to another server) makes this node
//     look the session up in the store, off the accounting path, and adopt
//     it: from then on this node — the one that knows the NAS's current
//     address — re-validates it and sends its Disconnect/CoA. A miss is
//     retried a few times (the other node's spool may not have reached the
//     store yet), then at the session's next accounting packet.
//
// Re-validation stays per node: each node re-validates the sessions in its
// own table (accepted here, or adopted from accounting received here).

// Shared links the server to the state several nodes share.
type Shared interface {
	// Append adds records of kind ("acct", "session", "session_end": the
	// kinds of package store/wifi) to the node's durable local spool, in
	// order, and returns once they are durable.
	Append(kind string, data ...[]byte) error
	// LookupSession returns the record of a live session by Class token
	// (32 hex digits), as written by any node.
	LookupSession(ctx context.Context, token string) (json.RawMessage, bool, error)
}

// Accounting modes (Config.Accounting).
const (
	AccountingFile  = "file"  // AccountingFile only (one node)
	AccountingStore = "store" // the shared store, through the spool
	AccountingBoth  = "both"  // both; the store first
)

// SetShared sets the shared store; call before Run.
func (s *Server) SetShared(sh Shared) { s.shared = sh }

// sharedSession is the session record in the store (its column fields
// have the names of store/wifi.Session).
type sharedSession struct {
	Token     string      `json:"token"`
	NAS       string      `json:"nas"`
	NASAddr   string      `json:"nas_addr"`
	NASIP     string      `json:"nas_ip,omitempty"`
	NASID     string      `json:"nas_identifier,omitempty"`
	UserName  string      `json:"user_name,omitempty"`
	ReqUser   string      `json:"request_user,omitempty"`
	SessionID string      `json:"session_id,omitempty"`
	Station   string      `json:"station,omitempty"`
	FramedIP  string      `json:"framed_ip,omitempty"`
	Rule      string      `json:"rule,omitempty"`
	WiFi      policy.WiFi `json:"wifi"`
	Chain     [][]byte    `json:"chain"` // DER, leaf first
	Accepted  time.Time   `json:"accepted"`
	Updated   time.Time   `json:"updated"`
}

type sharedEnd struct {
	Token   string    `json:"token"`
	Updated time.Time `json:"updated"`
}

func ipString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func encodeSession(tok *[16]byte, i *sessionInfo, now time.Time) []byte {
	r := sharedSession{Token: hex.EncodeToString(tok[:]), NASAddr: ipString(i.nasAddr), NASIP: ipString(i.nasIP),
		NASID: i.nasID, UserName: i.userName, ReqUser: i.reqUser, SessionID: i.sessionID, Station: i.station,
		FramedIP: ipString(i.framedIP), Rule: i.rule, WiFi: i.wifi, Accepted: i.accepted.UTC(), Updated: now.UTC()}
	if i.nas != nil {
		r.NAS = i.nas.name
	}
	for _, c := range i.chain {
		r.Chain = append(r.Chain, c.Raw)
	}
	b, _ := json.Marshal(&r)
	return b
}

// decodeSession rebuilds a session from its record for the NAS entry n.
func decodeSession(rec []byte, n *nas, src netip.Addr) (*liveSession, error) {
	var r sharedSession
	if err := json.Unmarshal(rec, &r); err != nil {
		return nil, err
	}
	e := &liveSession{info: sessionInfo{nas: n, nasAddr: src.Unmap(), nasID: r.NASID, userName: r.UserName,
		reqUser: r.ReqUser, station: r.Station, sessionID: r.SessionID, rule: r.Rule, wifi: r.WiFi, accepted: r.Accepted}}
	if _, err := hex.Decode(e.token[:], []byte(r.Token)); err != nil || len(r.Token) != 32 {
		return nil, errors.New("radius: shared session: bad token")
	}
	e.info.nasIP, _ = netip.ParseAddr(r.NASIP)
	e.info.framedIP, _ = netip.ParseAddr(r.FramedIP)
	for _, der := range r.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		e.info.chain = append(e.info.chain, c)
	}
	if len(e.info.chain) == 0 {
		return nil, errors.New("radius: shared session: no certificate chain")
	}
	return e, nil
}

// sharedCounters count the work with the shared store.
type sharedCounters struct {
	sessionsSpooled atomic.Uint64
	sessionsLost    atomic.Uint64 // spool full or failing: the record did not reach the spool
	adopted         atomic.Uint64
	adoptMisses     atomic.Uint64 // lookups that found nothing or failed, after the retries
}

// SharedStats describes the work with the shared store.
type SharedStats struct {
	SessionsSpooled uint64 // session records written to the spool
	SessionsLost    uint64 // session records that could not be spooled
	Adopted         uint64 // sessions of other nodes adopted from accounting
	AdoptMisses     uint64 // adoptions given up (not found or store unreachable)
}

// SharedStats returns the counters of the shared store's use.
func (s *Server) SharedStats() SharedStats {
	c := &s.sharedStats
	return SharedStats{SessionsSpooled: c.sessionsSpooled.Load(), SessionsLost: c.sessionsLost.Load(),
		Adopted: c.adopted.Load(), AdoptMisses: c.adoptMisses.Load()}
}

// spoolOp is a session record on its way to the spool: data, or a
// session to encode (by the writer, off the login path).
type spoolOp struct {
	kind string
	data []byte
	sess *sessionInfo
	tok  [16]byte
	at   time.Time
}

func (op *spoolOp) bytes() []byte {
	if op.sess != nil {
		return encodeSession(&op.tok, op.sess, op.at)
	}
	return op.data
}

const (
	// sessionLinger gathers session records into one spool append (one
	// fsync); nothing waits for them.
	sessionLinger     = 50 * time.Millisecond
	sessionSpoolQueue = 8192
	adoptQueue        = 1024
	adoptWorkers      = 2
	adoptTimeout      = 2 * time.Second
)

// adoptTries are the waits before each retry of a lookup that missed.
var adoptTries = []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}

type adoptReq struct {
	n     *nas
	src   netip.AddrPort
	pkt   []byte
	tok   [16]byte
	tries int
}

// sharedRun is the shared store's goroutines of one Run.
type sharedRun struct {
	s       *Server
	ops     chan spoolOp
	adopt   chan adoptReq
	stop    chan struct{}
	mu      sync.Mutex // guards inFlght, timers and stopped
	inFlght map[[16]byte]bool
	timers  map[*time.Timer]bool // retries waiting
	stopped bool
	lastLog atomic.Int64
}

// spoolSession queues a session record without waiting.
func (s *Server) spoolSession(op spoolOp) {
	r := s.sharedRun
	if r == nil {
		return
	}
	select {
	case r.ops <- op:
	default:
		s.sharedStats.sessionsLost.Add(1)
		r.warn("radius: shared store: session record queue full; record not spooled (this node still has the session)")
	}
}

func (r *sharedRun) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	if last := r.lastLog.Load(); now-last > int64(10*time.Second) && r.lastLog.CompareAndSwap(last, now) {
		r.s.log.Warn(msg, args...)
	}
}

// writer appends queued session records, grouping consecutive ones of a
// kind into one durable append, until stop; then it writes what is queued.
func (r *sharedRun) writer() {
	batch := make([][]byte, 0, 256)
	kind := ""
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := r.s.shared.Append(kind, batch...); err != nil {
			r.s.sharedStats.sessionsLost.Add(uint64(len(batch)))
			r.warn("radius: shared store: session records not spooled (this node still has the sessions)", "err", err, "records", len(batch))
		} else {
			r.s.sharedStats.sessionsSpooled.Add(uint64(len(batch)))
		}
		clear(batch)
		batch = batch[:0]
	}
	for {
		var op spoolOp
		select {
		case op = <-r.ops:
		case <-r.stop:
			for {
				select {
				case op = <-r.ops:
					if op.kind != kind {
						flush()
						kind = op.kind
					}
					batch = append(batch, op.bytes())
				default:
					flush()
					return
				}
			}
		}
		kind = op.kind
		batch = append(batch, op.bytes())
		linger := time.NewTimer(sessionLinger)
	more:
		for len(batch) < cap(batch) {
			select {
			case op = <-r.ops:
				if op.kind != kind {
					flush()
					kind = op.kind
				}
				batch = append(batch, op.bytes())
			case <-linger.C:
				break more
			case <-r.stop:
				break more // the stop case above drains the rest
			}
		}
		linger.Stop()
		flush()
	}
}

// requestAdopt asks for the session of tok to be looked up in the store.
func (s *Server) requestAdopt(n *nas, src netip.AddrPort, p packet, tok [16]byte) {
	r := s.sharedRun
	if r == nil {
		return
	}
	r.mu.Lock()
	busy := r.inFlght[tok]
	if !busy {
		r.inFlght[tok] = true
	}
	r.mu.Unlock()
	if busy {
		return
	}
	r.submit(adoptReq{n: n, src: src, pkt: append([]byte(nil), p.b...), tok: tok})
}

func (r *sharedRun) submit(a adoptReq) {
	select {
	case r.adopt <- a:
	default:
		r.done(a.tok)
		r.s.sharedStats.adoptMisses.Add(1)
	}
}

func (r *sharedRun) done(tok [16]byte) {
	r.mu.Lock()
	delete(r.inFlght, tok)
	r.mu.Unlock()
}

func (r *sharedRun) adopter() {
	for {
		select {
		case <-r.stop:
			return
		case a := <-r.adopt:
			r.adoptOne(a)
		}
	}
}

func (r *sharedRun) adoptOne(a adoptReq) {
	s := r.s
	ctx, cancel := context.WithTimeout(context.Background(), adoptTimeout)
	rec, ok, err := s.shared.LookupSession(ctx, hex.EncodeToString(a.tok[:]))
	cancel()
	if err != nil || !ok {
		if a.tries < len(adoptTries) {
			wait := adoptTries[a.tries]
			a.tries++
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.stopped {
				delete(r.inFlght, a.tok)
				return
			}
			var tm *time.Timer
			tm = time.AfterFunc(wait, func() {
				r.mu.Lock()
				delete(r.timers, tm)
				r.mu.Unlock()
				select {
				case <-r.stop:
					r.done(a.tok)
				default:
					r.submit(a)
				}
			})
			r.timers[tm] = true
			return
		}
		r.done(a.tok)
		s.sharedStats.adoptMisses.Add(1)
		s.log.Info("radius: accounting for a session of another node, not found in the shared store", "nas", a.n.name, "err", err)
		return
	}
	defer r.done(a.tok)
	e, err := decodeSession(rec, a.n, a.src.Addr())
	if err != nil {
		s.sharedStats.adoptMisses.Add(1)
		s.log.Warn("radius: shared session record unusable", "nas", a.n.name, "err", err)
		return
	}
	p, err := parsePacket(a.pkt)
	if err != nil {
		return
	}
	if !s.live.adopt(e, time.Now()) {
		return // accepted here meanwhile, or already adopted
	}
	s.sharedStats.adopted.Add(1)
	s.log.Info("radius: adopted a Wi-Fi session accepted by another node", "nas", a.n.name, "user", e.info.userName, "station", e.info.station)
	s.trackAccounting(a.n, a.src, p)
}

const (
	kindAcct       = "acct"
	kindSession    = "session"
	kindSessionEnd = "session_end"
)

// endSession queues the end of a session (called under liveTable.mu).
func (s *Server) endSession(tok [16]byte) {
	b, _ := json.Marshal(sharedEnd{Token: hex.EncodeToString(tok[:]), Updated: time.Now().UTC()})
	s.spoolSession(spoolOp{kind: kindSessionEnd, data: b})
}

// startShared starts the spool writer and the adopters; the returned
// function stops them (after the workers have stopped) and waits.
func (s *Server) startShared() (stop func()) {
	if s.shared == nil {
		return func() {}
	}
	r := &sharedRun{s: s, ops: make(chan spoolOp, sessionSpoolQueue), adopt: make(chan adoptReq, adoptQueue),
		stop: make(chan struct{}), inFlght: map[[16]byte]bool{}, timers: map[*time.Timer]bool{}}
	s.sharedRun = r
	s.live.mu.Lock()
	s.live.onEnd = s.endSession
	s.live.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(1 + adoptWorkers)
	go func() { defer wg.Done(); r.writer() }()
	for range adoptWorkers {
		go func() { defer wg.Done(); r.adopter() }()
	}
	return func() {
		r.mu.Lock()
		r.stopped = true
		for tm := range r.timers {
			tm.Stop()
		}
		r.mu.Unlock()
		close(r.stop)
		wg.Wait()
	}
}
