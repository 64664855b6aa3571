package radius

import (
	"sync/atomic"

	"github.com/gatehouse/gatehouse/policy/metric"
)

// Drop reasons, as reported by Stats.
const (
	DropUnknownClient       = "unknown_client"
	DropBadAuthenticator    = "bad_authenticator"
	DropBadMA               = "bad_message_authenticator"
	DropMissingMA           = "missing_message_authenticator"
	DropMalformed           = "malformed"
	DropOverload            = "overload"
	DropDuplicate           = "duplicate_in_progress"
	DropUnexpectedCode      = "unexpected_code"
	DropEAPDiscard          = "eap_discard"
	DropSessionBusy         = "session_busy"
	DropAccountingWriteFail = "accounting_write_failed"
	DropShuttingDown        = "shutting_down"
	DropDecisionsBusy       = "decisions_busy"
)

var dropNames = [...]string{
	DropUnknownClient, DropBadAuthenticator, DropBadMA, DropMissingMA, DropMalformed,
	DropOverload, DropDuplicate, DropUnexpectedCode, DropEAPDiscard, DropSessionBusy,
	DropAccountingWriteFail, DropShuttingDown, DropDecisionsBusy,
}

type dropReason uint8

const (
	dUnknownClient dropReason = iota
	dBadAuthenticator
	dBadMA
	dMissingMA
	dMalformed
	dOverload
	dDuplicate
	dUnexpectedCode
	dEAPDiscard
	dSessionBusy
	dAcctWrite
	dShuttingDown
	dDecisionsBusy
	numDrops
)

var codeNames = map[byte]string{
	codeAccessRequest:     "access_request",
	codeAccountingRequest: "accounting_request",
	codeStatusServer:      "status_server",
}

// counters are the server's live statistics.
type counters struct {
	drops          [numDrops]atomic.Uint64
	requests       [256]atomic.Uint64
	accepts        atomic.Uint64
	rejects        atomic.Uint64
	challenges     atomic.Uint64
	cacheHits      atomic.Uint64
	acctRecords    atomic.Uint64
	sessionsOpened atomic.Uint64
	authLatency    metric.Histogram // EAP conversation: first request to Accept/Reject
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	Drops map[string]uint64 // by reason (Drop* constants)
	// DropsByClient splits Drops by the configured client the datagram
	// came from (its name), then by reason. Drops of datagrams that match
	// no client (unknown_client), or that could not be attributed, are in
	// Drops only.
	DropsByClient map[string]map[string]uint64
	Requests      map[string]uint64 // valid requests by code: access_request, accounting_request, status_server, code_N

	Accepts, Rejects, Challenges uint64
	CacheHits                    uint64 // retransmissions answered from the reply cache
	AccountingRecords            uint64
	// AccountingDuplicates counts, by configured client, the
	// Accounting-Requests answered without a record because the same
	// record was recorded already (a retransmission on another
	// connection or port, or after the reply cache forgot it).
	AccountingDuplicates map[string]uint64

	// KernelDrops counts the datagrams the kernel dropped because a
	// socket's receive buffer was full (Linux; 0 elsewhere).
	KernelDrops uint64

	SessionsLive    int    // EAP conversations in the table
	SessionsOpened  uint64 // conversations started
	SessionsEvicted uint64 // pushed out by MaxSessions or MaxHalfOpenPerClient
	SessionsExpired uint64 // ended by idle or total timeout
	// SessionBytes is the memory the conversations hold, as accounted
	// against MaxSessionBytes; SessionsEvictedMemory counts those evicted
	// to stay within it.
	SessionBytes          int64
	SessionsEvictedMemory uint64

	TLSSessions    int    // TLS sessions kept for resumption (tlssessions.go)
	TLSResumptions uint64 // logins that resumed one

	// AuthLatency is the time from a conversation's first Access-Request
	// to its Access-Accept or Access-Reject.
	AuthLatency metric.Snapshot
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	st := Stats{
		Drops:                 make(map[string]uint64),
		Requests:              make(map[string]uint64),
		Accepts:               c.accepts.Load(),
		Rejects:               c.rejects.Load(),
		Challenges:            c.challenges.Load(),
		CacheHits:             c.cacheHits.Load(),
		AccountingRecords:     c.acctRecords.Load(),
		SessionsLive:          s.sessions.len(),
		SessionsOpened:        c.sessionsOpened.Load(),
		SessionsEvicted:       s.sessions.evictions.Load(),
		SessionsExpired:       s.sessions.expirations.Load(),
		SessionBytes:          s.sessions.heldBytes(),
		SessionsEvictedMemory: s.sessions.budgetEvictions.Load(),
		AuthLatency:           c.authLatency.Snapshot(),
	}
	ts := s.eapCfg.Tickets.Stats()
	st.TLSSessions, st.TLSResumptions = ts.Entries, ts.Resumed
	for i := range c.drops {
		if v := c.drops[i].Load(); v != 0 {
			st.Drops[dropNames[i]] = v
		}
	}
	s.mu.Lock()
	for _, fd := range s.fds {
		st.KernelDrops += socketDrops(fd)
	}
	s.mu.Unlock()
	nases := []*nas(s.nas)
	if s.rs != nil {
		for _, c := range s.rs.clients {
			nases = append(nases, c.nas)
		}
	}
	for _, n := range nases {
		if v := n.acctDups.Load(); v != 0 {
			if st.AccountingDuplicates == nil {
				st.AccountingDuplicates = make(map[string]uint64)
			}
			st.AccountingDuplicates[n.name] += v
		}
		for i := range n.drops {
			v := n.drops[i].Load()
			if v == 0 {
				continue
			}
			if st.DropsByClient == nil {
				st.DropsByClient = make(map[string]map[string]uint64)
			}
			m := st.DropsByClient[n.name]
			if m == nil {
				m = make(map[string]uint64)
				st.DropsByClient[n.name] = m
			}
			m[dropNames[i]] += v
		}
	}
	for i := range c.requests {
		if v := c.requests[i].Load(); v != 0 {
			name, ok := codeNames[byte(i)]
			if !ok {
				name = "code_" + itoa(i)
			}
			st.Requests[name] = v
		}
	}
	return st
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [8]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}
