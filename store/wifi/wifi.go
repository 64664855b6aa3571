// Package wifi defines the Wi-Fi records that gatehouse nodes share — the
// accounting records and the Wi-Fi session table (Class token → NAS
// session → certificate chain) used for Disconnect/CoA — and the contract
// of a store that keeps them: records arrive from a node's spool (package
// store/spool) in order and idempotently, and a session accepted on one
// node can be looked up by the node that receives its accounting.
//
// Two implementations: FileStore (one node, files; the reference the
// contract suite also runs against) and store/postgres.WiFi.
package wifi

import (
	"context"
	"encoding/json"
	"time"

	"github.com/gatehouse/gatehouse/store/spool"
)

// Entry kinds in the spool.
const (
	KindAcct       = "acct"        // Data: an Acct
	KindSession    = "session"     // Data: a Session (created or updated)
	KindSessionEnd = "session_end" // Data: a SessionEnd
	// KindAudit is an audit event (an audit.jsonl line, package
	// policy/audit), for the audit_events table. The file store ignores
	// it: one node has its audit.jsonl.
	KindAudit = "audit"
)

// Audit is the part of an audit event that the stores put in columns.
type Audit struct {
	Time    time.Time `json:"time"`
	Door    string    `json:"door"`
	Event   string    `json:"event"`
	Outcome string    `json:"outcome"`
	Code    string    `json:"code"`
	Rule    string    `json:"rule,omitempty"`
	Name    string    `json:"name,omitempty"`
}

// Acct is the part of an accounting record (radius.AcctRecord, one line
// of accounting.jsonl) that the stores put in columns; the whole record is
// kept as JSON besides.
type Acct struct {
	Time           time.Time `json:"time"`
	Status         string    `json:"status"`
	SessionID      string    `json:"session_id,omitempty"`
	UserName       string    `json:"user_name,omitempty"`
	NAS            string    `json:"nas"`
	NASAddr        string    `json:"nas_addr"`
	CallingStation string    `json:"calling_station_id,omitempty"`
	FramedIP       string    `json:"framed_ip,omitempty"`
	SessionTime    *uint32   `json:"session_time,omitempty"`
	InputOctets    *uint64   `json:"input_octets,omitempty"`
	OutputOctets   *uint64   `json:"output_octets,omitempty"`
	TerminateCause *uint32   `json:"terminate_cause,omitempty"`
	ClassToken     string    `json:"class_token,omitempty"` // hex, the gatehouse Class token
	RecordID       string    `json:"record_id,omitempty"`   // the same on every node for one record (radius.AcctRecord)
}

// Session is the part of a Wi-Fi session record that the stores put in
// columns; the whole record (certificate chain included) is kept as JSON
// and handed back by LookupSession.
type Session struct {
	Token     string    `json:"token"` // 32 hex digits
	NAS       string    `json:"nas"`
	NASAddr   string    `json:"nas_addr"`
	SessionID string    `json:"session_id,omitempty"`
	Station   string    `json:"station,omitempty"`
	FramedIP  string    `json:"framed_ip,omitempty"`
	Accepted  time.Time `json:"accepted"`
	Updated   time.Time `json:"updated"`
}

// SessionEnd ends a session (Accounting-Stop, disconnect).
type SessionEnd struct {
	Token   string    `json:"token"`
	Updated time.Time `json:"updated"`
}

// AcctRow is a stored accounting record.
type AcctRow struct {
	Key    string // idempotency key, spool.Key(node, seq)
	Node   string
	Acct   Acct
	Record json.RawMessage
}

// Store keeps the shared Wi-Fi records.
//
// Apply (spool.Target) commits a batch from one node's spool, all or
// nothing, idempotently by key: accounting records are inserted once;
// a session update older (by Updated) than what is stored is ignored, so
// a late replay from another node does not resurrect an ended session.
type Store interface {
	spool.Target
	// LookupSession returns the record of a live session by token.
	LookupSession(ctx context.Context, token string) (json.RawMessage, bool, error)
	// Accounting returns the stored records of one NAS session ("" for
	// all), oldest first.
	Accounting(ctx context.Context, acctSession string) ([]AcctRow, error)
}

// Node is what a RADIUS server of a node needs from the shared state
// (radius.Shared): its spool's Append, and the store's LookupSession.
type Node struct {
	*spool.Spool
	Store
}
