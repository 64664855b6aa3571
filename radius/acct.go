package radius

import (
	"encoding/json"
	"fmt"
	"hash"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Accounting records (RFC 2866) are appended to Config.AccountingFile as
// one JSON object per line. Durability: a Stop record is fsynced before the
// Accounting-Response is sent; Start and Interim-Update records are written
// (to the OS) before the response and fsynced within about a second by the
// server's janitor. A record that cannot be written is not acknowledged, so
// the NAS retries.

// AcctRecord is one accounting line.
type AcctRecord struct {
	Time           time.Time `json:"time"`
	Status         string    `json:"status"` // start, stop, interim, accounting-on, accounting-off, or the number
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
}

var acctStatusNames = map[uint32]string{1: "start", 2: "stop", 3: "interim", 7: "accounting-on", 8: "accounting-off"}

// parseAcct reads the attributes of an Accounting-Request.
func parseAcct(p packet, n *nas, src netip.AddrPort, now time.Time) AcctRecord {
	rec := AcctRecord{Time: now.UTC(), NAS: n.name, NASAddr: src.Addr().Unmap().String()}
	u32 := func(t byte) *uint32 {
		if v, ok := p.uint32Attr(t); ok {
			return &v
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
	rec := parseAcct(p, n, src, time.Now())
	if s.acct != nil {
		if err := s.acct.write(&rec); err != nil {
			s.drop(dAcctWrite)
			return nil, err
		}
	}
	s.stats.acctRecords.Add(1)
	s.trackAccounting(n, src, p)
	s.log.Debug("radius: accounting", "nas", n.name, "status", rec.Status, "session", rec.SessionID, "user", rec.UserName)
	r := newReply(make([]byte, 0, 64), codeAccountingResponse, p.id(), p.auth())
	r.maZero = true
	return r.finish(h, w.md5, n.secret)
}

// acctLog is the append-only accounting file.
type acctLog struct {
	path string

	mu    sync.Mutex // guards the fields below
	f     *os.File
	dirty bool
}

func openAcctLog(path string) (*acctLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("radius: accounting file: %w", err)
	}
	return &acctLog{path: path, f: f}, nil
}

// reopen syncs and closes the file and opens its path again, so that a
// log rotator that renamed it (logrotate, then `systemctl reload`) gets a
// fresh file. On failure the old file stays in use.
func (a *acctLog) reopen() error {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("radius: accounting file: reopen: %w", err)
	}
	a.mu.Lock()
	old := a.f
	a.f, a.dirty = f, false
	a.mu.Unlock()
	old.Sync()
	return old.Close()
}

func (a *acctLog) write(rec *AcctRecord) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.f.Write(line); err != nil {
		return fmt.Errorf("radius: accounting file: %w", err)
	}
	if rec.Status == "stop" {
		a.dirty = false
		if err := a.f.Sync(); err != nil {
			return fmt.Errorf("radius: accounting file: fsync: %w", err)
		}
		return nil
	}
	a.dirty = true
	return nil
}

func (a *acctLog) sync() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.dirty {
		return nil
	}
	a.dirty = false
	return a.f.Sync()
}

func (a *acctLog) close() error {
	if err := a.sync(); err != nil {
		a.f.Close()
		return err
	}
	return a.f.Close()
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
