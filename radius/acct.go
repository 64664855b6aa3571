package radius

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/policy/jsonl"
)

// Accounting records (RFC 2866) are appended to Config.AccountingFile as
// one JSON object per line; every record is fsynced before its
// Accounting-Response is sent (see acctLog below).

// AcctRecord is one accounting line.
type AcctRecord struct {
	Time           time.Time `json:"time"`
	Status         string    `json:"status"`                // start, stop, interim, accounting-on, accounting-off, or the number
	ClassToken     string    `json:"class_token,omitempty"` // gatehouse's Class token (32 hex digits), linking the session to its Accept
	SessionID      string    `json:"session_id,omitempty"`
	UserName       string    `json:"user_name,omitempty"`
	NAS            string    `json:"nas"`                      // configured client name
	NASAddr        string    `json:"nas_addr"`                 // source address of the request
	NASIP          string    `json:"nas_ip,omitempty"`         // NAS-IP-Address
	NASIdentifier  string    `json:"nas_identifier,omitempty"` // NAS-Identifier
	NASPort        *uint32   `json:"nas_port,omitempty"`
	CallingStation string    `json:"calling_station_id,omitempty"`
	CalledStation  string    `json:"called_station_id,omitempty"`
	FramedIP       string    `json:"framed_ip,omitempty"`
	FramedIPv6     string    `json:"framed_ipv6,omitempty"`
	SessionTime    *uint32   `json:"session_time,omitempty"`
	InputOctets    *uint64   `json:"input_octets,omitempty"`
	OutputOctets   *uint64   `json:"output_octets,omitempty"`
	InputPackets   *uint32   `json:"input_packets,omitempty"`
	OutputPackets  *uint32   `json:"output_packets,omitempty"`
	TerminateCause *uint32   `json:"terminate_cause,omitempty"`
	// EventTime is the Event-Timestamp (RFC 2869): when the event
	// happened on the NAS. DelayTime is the Acct-Delay-Time (RFC 2866):
	// how many seconds the NAS had been trying to send the record, so
	// that Time − DelayTime is about when it happened. Both matter when a
	// record arrives late (a NAS resending after an outage).
	EventTime *time.Time `json:"event_time,omitempty"`
	DelayTime *uint32    `json:"delay_time,omitempty"`
	// RecordID names the record the same way on every node (acctdedup.go):
	// a copy an access point resent, to this node or another, has the same
	// one. Empty when the request names no event (no Acct-Session-Id nor
	// Event-Timestamp).
	RecordID string `json:"record_id,omitempty"`
}

var acctStatusNames = map[uint32]string{1: "start", 2: "stop", 3: "interim", 7: "accounting-on", 8: "accounting-off"}

// parseAcct reads the attributes of an Accounting-Request.
func parseAcct(p packet, n *nas, src netip.AddrPort, now time.Time) AcctRecord {
	rec := AcctRecord{Time: now.UTC(), NAS: n.name, NASAddr: src.Addr().Unmap().String()}
	u32 := func(t byte) *uint32 {
		if v, ok := p.uint32Attr(t); ok {
			w := v // on the heap only when present
			return &w
		}
		return nil
	}
	str := func(t byte) string {
		v, _ := p.attr(t)
		return string(v)
	}
	if st, ok := p.uint32Attr(attrAcctStatusType); ok {
		rec.Status = acctStatusNames[st]
		if rec.Status == "" {
			rec.Status = fmt.Sprint(st)
		}
	}
	if tok, ok := findToken(p); ok {
		rec.ClassToken = hex.EncodeToString(tok[:])
	}
	rec.SessionID = str(attrAcctSessionID)
	rec.UserName = str(attrUserName)
	rec.NASIdentifier = str(attrNASIdentifier)
	rec.CallingStation = str(attrCallingStationID)
	rec.CalledStation = str(attrCalledStationID)
	if v, ok := p.attr(attrNASIPAddress); ok && len(v) == 4 {
		rec.NASIP = netip.AddrFrom4([4]byte(v)).String()
	}
	if v, ok := p.attr(attrFramedIPAddress); ok && len(v) == 4 {
		rec.FramedIP = netip.AddrFrom4([4]byte(v)).String()
	}
	if v, ok := p.attr(attrFramedIPv6Address); ok && len(v) == 16 {
		rec.FramedIPv6 = netip.AddrFrom16([16]byte(v)).String()
	}
	rec.NASPort = u32(attrNASPort)
	rec.SessionTime = u32(attrAcctSessionTime)
	rec.InputPackets = u32(attrAcctInputPackets)
	rec.OutputPackets = u32(attrAcctOutputPackets)
	rec.TerminateCause = u32(attrAcctTerminateCause)
	rec.DelayTime = u32(attrAcctDelayTime)
	if v, ok := p.uint32Attr(attrEventTimestamp); ok {
		t := time.Unix(int64(v), 0).UTC()
		rec.EventTime = &t
	}
	octets := func(lo, hi byte) *uint64 {
		l, ok := p.uint32Attr(lo)
		if !ok {
			return nil
		}
		h, _ := p.uint32Attr(hi)
		v := uint64(h)<<32 | uint64(l)
		return &v
	}
	rec.InputOctets = octets(attrAcctInputOctets, attrAcctInputGigawords)
	rec.OutputOctets = octets(attrAcctOutputOctets, attrAcctOutputGigawords)
	return rec
}

func (s *Server) accounting(w *worker, h hash.Hash, n *nas, p packet, src netip.AddrPort) ([]byte, error) {
	now := time.Now()
	rec := parseAcct(p, n, src, now)
	reply, err := s.acctResponse(w, h, n, p) // acctreply.go
	if err != nil {
		return nil, err
	}
	if s.acct == nil {
		s.acctDone(n, src, p, &rec)
		return reply, nil
	}
	seen := &s.acct.seen
	id := seen.identity(n, p, src, w.key.cid) // acctdedup.go
	if seen.recorded(id, now) {
		s.acctDuplicate(n, src, &rec)
		return reply, nil
	}
	rec.RecordID = recordID(n, p, src)
	line, err := json.Marshal(&rec)
	if err != nil {
		s.dropN(n, dAcctWrite)
		return nil, err
	}
	req := &acctReq{s: s, n: n, conn: w.conn, key: w.key, id: id, line: append(line, '\n'), reply: reply, pkt: bytes.Clone(p.b), status: rec.Status, session: rec.SessionID, user: rec.UserName}
	switch seen.claim(id, req, now) {
	case seenRecorded: // recorded since the look-up above
		s.acctDuplicate(n, src, &rec)
		return reply, nil
	case seenBusy:
		// The same record is being committed (it came on another
		// connection or port): answered, or dropped, with it.
		return nil, errDecisionPending
	}
	if !s.acct.submit(req) {
		for _, d := range seen.done(id, req, false, now) {
			d.finish(errAcctQueueFull)
		}
		s.dropN(n, dAcctWrite)
		return nil, errAcctQueueFull
	}
	// The committer answers once the record is durable (or drops).
	return nil, errDecisionPending
}

var errAcctQueueFull = errors.New("radius: accounting: commit queue full")

// acctDuplicate counts and logs a duplicate answered without a record.
func (s *Server) acctDuplicate(n *nas, src netip.AddrPort, rec *AcctRecord) {
	n.acctDups.Add(1)
	s.log.Debug("radius: accounting duplicate answered, already recorded", "nas", n.name, "src", src.String(),
		"status", rec.Status, "session", rec.SessionID)
}

// acctDone counts a recorded request and links it to its Wi-Fi session.
func (s *Server) acctDone(n *nas, src netip.AddrPort, p packet, rec *AcctRecord) {
	s.stats.acctRecords.Add(1)
	s.trackAccounting(n, src, p)
	s.log.Debug("radius: accounting", "nas", n.name, "status", rec.Status, "session", rec.SessionID, "user", rec.UserName)
}

// acctReq is an Accounting-Request waiting for its record to be durable,
// or (dup) a duplicate of one waiting for it. The worker's job is
// recycled when process returns, so it holds copies.
type acctReq struct {
	s       *Server
	n       *nas
	conn    net.PacketConn
	key     cacheKey // source, Identifier, Request Authenticator: busy in the reply cache
	id      acctID   // the record's identity (acctdedup.go)
	dup     bool     // a duplicate: answered with its owner, never written
	line    []byte   // the JSON record and its newline
	reply   []byte   // the Accounting-Response, sent once line is synced
	pkt     []byte   // the request, for trackAccounting
	status  string   // for the debug log
	session string
	user    string

	dups []*acctReq // duplicates waiting for this one (guarded by acctSeen.mu)
}

// finish answers req (err == nil: its record is durable) or drops it so
// that the NAS retransmits: the reply-cache entry is abandoned and the
// record's identity forgotten, so the retransmission is processed (and
// recorded) afresh. The duplicates that waited for req go the same way.
func (req *acctReq) finish(err error) {
	s := req.s
	if !req.dup {
		for _, d := range s.acct.seen.done(req.id, req, err == nil, time.Now()) {
			d.finish(err)
		}
	}
	if err != nil {
		s.cache.abandon(&req.key)
		s.dropN(req.n, dAcctWrite)
		return
	}
	s.cache.complete(&req.key, req.reply)
	s.sendTo(req.conn, req.key.src, req.reply)
	if req.dup {
		s.acctDuplicate(req.n, req.key.src, &AcctRecord{Status: req.status, SessionID: req.session})
		return
	}
	if p, perr := parsePacket(req.pkt); perr == nil {
		rec := AcctRecord{Status: req.status, SessionID: req.session, UserName: req.user}
		s.acctDone(req.n, req.key.src, p, &rec)
	}
}

// Accounting file durability. Every Accounting-Request (Start, Stop,
// Interim-Update, Accounting-On/Off) is answered only after its record is
// on disk: workers hand records to one committer goroutine, which appends
// all that are waiting as one write, syncs once (group commit: one fsync
// per batch, not per record), then sends their replies. A write or sync
// that fails (a full disk, an I/O error) is rolled back to the last whole
// line (package jsonl) and the batch is dropped, counted
// accounting_write_failed: nothing is acknowledged that is not durable,
// and the NAS retransmits (RFC 2866). The next batch tries again, so
// recording resumes by itself when space returns.
//
// Duplicates: a retransmission on the same connection or port (same
// source, Identifier and Request Authenticator) that arrives while its
// record is being committed is dropped as duplicate_in_progress, and after
// the reply it gets the cached reply (10 s). Any other copy of a recorded
// record — later, on another RadSec connection, from another source port,
// with a new Identifier or Acct-Delay-Time — is answered and not recorded
// again (acctdedup.go). After a failed write nothing of the record is in
// the file and nothing remembers it, so the retransmission is written once.

const (
	acctQueue    = 4096 // records waiting for the committer
	acctBatchMax = 512  // records per write and fsync
	acctLogEvery = 10 * time.Second
)

// acctLog is the append-only accounting file and its committer. With a
// shared store, records go to its spool (first) as well, or instead
// (path "").
type acctLog struct {
	path   string
	shared Shared // nil: the file only
	in     chan *acctReq
	done   chan struct{} // closed when the committer has exited
	log    *slog.Logger

	mu          sync.Mutex // guards app, fileErrs, lastFileLog
	app         *jsonl.Appender
	fileErrs    uint64 // "both": file writes that failed after the spool took the record
	lastFileLog time.Time

	seen acctSeen // records recently recorded (acctdedup.go)

	// Owned by the committer.
	failing bool
	lastLog time.Time
	quiet   int
}

// openAcctLog opens the accounting file (repairing a partial last line
// left by a crash) and starts its committer; close stops it.
func openAcctLog(path string, shared Shared, log *slog.Logger) (*acctLog, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if path == "" {
		a := &acctLog{shared: shared, in: make(chan *acctReq, acctQueue), done: make(chan struct{}), log: log}
		a.seen.init()
		go a.commitLoop()
		return a, nil
	}
	app, err := jsonl.Open(path, 0o640)
	if err != nil {
		return nil, fmt.Errorf("radius: accounting file: %w", err)
	}
	if n := app.Cut(); n > 0 {
		log.Warn("radius: accounting file ended in a partial line (crash during a write); cut it, copy kept", "file", path, "bytes", n, "copy", path+".partial", "copy_error", app.QuarantineErr())
	}
	a := &acctLog{path: path, shared: shared, app: app, in: make(chan *acctReq, acctQueue), done: make(chan struct{}), log: log}
	a.seen.init()
	go a.commitLoop()
	return a, nil
}

// submit queues req for the committer; false if the queue is full.
func (a *acctLog) submit(req *acctReq) bool {
	select {
	case a.in <- req:
		return true
	default:
		return false
	}
}

func (a *acctLog) commitLoop() {
	defer close(a.done)
	batch := make([]*acctReq, 0, acctBatchMax)
	var buf []byte
	for req := range a.in {
		batch, buf = append(batch[:0], req), append(buf[:0], req.line...)
	more:
		for len(batch) < acctBatchMax {
			select {
			case r, ok := <-a.in:
				if !ok {
					break more
				}
				batch, buf = append(batch, r), append(buf, r.line...)
			default:
				break more
			}
		}
		err := a.commit(buf)
		if err != nil {
			a.logFailure(err, len(batch))
		} else if a.failing {
			a.failing = false
			a.log.Info("radius: accounting file: writing again")
		}
		for _, r := range batch {
			r.finish(err)
		}
		clear(batch)
	}
}

// commit appends lines and syncs; on error the file is as before.
func (a *acctLog) commit(lines []byte) error {
	if a.shared != nil {
		recs := bytes.SplitAfter(lines, []byte{'\n'})
		recs = recs[:len(recs)-1] // after the last newline
		for i, r := range recs {
			recs[i] = r[:len(r)-1]
		}
		if err := a.shared.Append(kindAcct, recs...); err != nil {
			return fmt.Errorf("radius: accounting spool: %w", err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.app == nil {
		return nil
	}
	err := a.app.Append(lines)
	if err == nil {
		err = a.app.Sync()
	}
	if err != nil && a.shared != nil {
		// "both": the store is the record of truth and has it; not
		// acknowledging would make the retransmission a second row.
		a.fileErrs++
		if now := time.Now(); now.Sub(a.lastFileLog) >= acctLogEvery {
			a.log.Error("radius: accounting file: record not written (it is in the shared store's spool)", "err", err, "failures", a.fileErrs)
			a.lastFileLog = now
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("radius: accounting file: %w", err)
	}
	return nil
}

func (a *acctLog) logFailure(err error, n int) {
	a.failing = true
	if now := time.Now(); now.Sub(a.lastLog) >= acctLogEvery {
		a.log.Error("radius: accounting not recorded; requests dropped unanswered, the access points retransmit", "err", err, "requests", n, "failures_not_logged", a.quiet)
		a.lastLog, a.quiet = now, 0
	} else {
		a.quiet++
	}
}

// write records rec synchronously (durable when it returns nil).
func (a *acctLog) write(rec *AcctRecord) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return a.commit(append(line, '\n'))
}

// reopen syncs and closes the file and opens its path again, so that a
// log rotator that renamed it (logrotate, then `systemctl reload`) gets a
// fresh file. On failure the old file stays in use.
func (a *acctLog) reopen() error {
	if a.path == "" {
		return nil
	}
	app, err := jsonl.Open(a.path, 0o640)
	if err != nil {
		return fmt.Errorf("radius: accounting file: reopen: %w", err)
	}
	if n := app.Cut(); n > 0 {
		a.log.Warn("radius: accounting file ended in a partial line; cut it, copy kept", "file", a.path, "bytes", n, "copy", a.path+".partial", "copy_error", app.QuarantineErr())
	}
	a.mu.Lock()
	old := a.app
	a.app = app
	a.mu.Unlock()
	return old.Close()
}

// sync is kept for the janitor: every record is synced before it is
// acknowledged, so there is nothing left to do but a no-op sync.
func (a *acctLog) sync() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.app == nil {
		return nil
	}
	return a.app.Sync()
}

// close commits what is queued (no worker submits any more), then closes
// the file.
func (a *acctLog) close() error {
	close(a.in)
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.app == nil {
		return nil
	}
	return a.app.Close()
}

// ReopenAccounting reopens the accounting file at its path, for log
// rotation: rename the file, then call this (gatehouse serve does on
// SIGHUP). Without an accounting file it does nothing.
func (s *Server) ReopenAccounting() error {
	if s.acct == nil {
		return nil
	}
	return s.acct.reopen()
}
