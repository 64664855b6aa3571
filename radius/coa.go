package radius

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// Dynamic authorization (RFC 5176): gatehouse acts as the Dynamic
// Authorization Client and sends Disconnect-Requests and CoA-Requests to
// the NAS's port (3799 by default). Every request carries a
// Message-Authenticator as its first attribute, computed (like the Request
// Authenticator) over a zeroed authenticator field as RFC 5176 section 3.3
// and FreeRADIUS do, plus Event-Timestamp (RFC 5176 section 3.4, replay
// protection). The session is named by User-Name, Acct-Session-Id and
// Calling-Station-Id as the NAS reported them, with the NAS-IP-Address and
// NAS-Identifier the NAS itself sent. An answer counts only if its
// Response Authenticator is right and, when it carries one, its
// Message-Authenticator too (NASes are not required to send one).

// RFC 5176 codes and attributes.
const (
	codeDisconnectRequest = 40
	codeDisconnectACK     = 41
	codeDisconnectNAK     = 42
	codeCoARequest        = 43
	codeCoAACK            = 44
	codeCoANAK            = 45

	attrEventTimestamp = 55
	attrErrorCause     = 101

	// errorCauseNoSession is Error-Cause 503, Session-Context-Not-Found:
	// the NAS no longer has the session, so it is gone either way.
	errorCauseNoSession = 503
)

// Defaults for dynamic authorization.
const (
	DefaultCoAPort         = 3799
	DefaultRevalidateEvery = 60 * time.Second
	DefaultDynAuthTimeout  = 2 * time.Second
	DefaultDynAuthRetries  = 2
	DefaultMaxWiFiSessions = 65536
)

// dynSettings is the validated server-wide part of the configuration.
type dynSettings struct {
	revalidateEvery time.Duration // <= 0: no periodic run
	timeout         time.Duration
	retries         int
	maxSessions     int
}

func (cfg *Config) dynSettings() (dynSettings, error) {
	d := dynSettings{
		revalidateEvery: cfg.RevalidateEvery.Duration,
		timeout:         cfg.DynAuthTimeout.Duration,
		retries:         cfg.DynAuthRetries,
		maxSessions:     cfg.MaxWiFiSessions,
	}
	if d.revalidateEvery == 0 {
		d.revalidateEvery = DefaultRevalidateEvery
	}
	if d.revalidateEvery > 0 && d.revalidateEvery < time.Second {
		return d, fmt.Errorf("radius: revalidate_every %v: want at least 1s (or negative to disable)", d.revalidateEvery)
	}
	if d.timeout == 0 {
		d.timeout = DefaultDynAuthTimeout
	}
	if d.timeout < 0 {
		return d, fmt.Errorf("radius: dynauth_timeout %v: must be positive", d.timeout)
	}
	switch {
	case d.retries == 0:
		d.retries = DefaultDynAuthRetries
	case d.retries < 0:
		d.retries = 0
	case d.retries > 10:
		return d, fmt.Errorf("radius: dynauth_retries %d: want at most 10", d.retries)
	}
	if d.maxSessions == 0 {
		d.maxSessions = DefaultMaxWiFiSessions
	}
	if d.maxSessions < 1 {
		return d, fmt.Errorf("radius: max_wifi_sessions %d: must be positive", d.maxSessions)
	}
	return d, nil
}

// clientDyn is one client's dynamic authorization settings.
type clientDyn struct {
	port  uint16 // 0: no dynamic authorization
	coa   bool
	nasIP bool // send to NAS-IP-Address when inside the client's network
}

func (c *ClientConfig) dynAuth() (clientDyn, error) {
	d := clientDyn{port: DefaultCoAPort, coa: c.CoA, nasIP: c.CoAToNASIP}
	if c.CoAPort != nil {
		switch p := *c.CoAPort; {
		case p <= 0:
			d.port = 0
		case p > 65535:
			return d, fmt.Errorf("coa_port %d: want 1..65535 (or 0 for none)", p)
		default:
			d.port = uint16(p)
		}
	}
	return d, nil
}

// dynKind is the kind of a dynamic authorization request.
type dynKind uint8

const (
	dynDisconnect dynKind = iota
	dynCoA
)

func (k dynKind) String() string {
	if k == dynCoA {
		return "coa"
	}
	return "disconnect"
}

// dynResult is the outcome of one exchange.
type dynResult struct {
	Result     string // "ack", "nak", "timeout", "error"
	ErrorCause uint32 // from a NAK, 0 if none
	Attempts   int
	Took       time.Duration
	Err        error
}

// dynCounters count exchanges by kind and result.
type dynCounters struct {
	sent, acks, naks, timeouts, errors [2]atomic.Uint64
}

// DynAuthStats counts Disconnect-Requests (index 0) and CoA-Requests
// (index 1) by their outcome.
type DynAuthStats struct {
	Sent, ACKs, NAKs, Timeouts, Errors [2]uint64
}

// DynAuthStats returns a snapshot of the dynamic authorization counters.
func (s *Server) DynAuthStats() DynAuthStats {
	var st DynAuthStats
	c := &s.dynStats
	for i := range 2 {
		st.Sent[i], st.ACKs[i], st.NAKs[i] = c.sent[i].Load(), c.acks[i].Load(), c.naks[i].Load()
		st.Timeouts[i], st.Errors[i] = c.timeouts[i].Load(), c.errors[i].Load()
	}
	return st
}

// buildDynRequest encodes a Disconnect- or CoA-Request for a session. For
// a CoA-Request, wf carries the new Wi-Fi attributes (Class is not sent:
// the NAS keeps the one from the Access-Accept).
func buildDynRequest(kind dynKind, id byte, info *sessionInfo, wf *policy.WiFi, secret []byte, now time.Time) ([]byte, error) {
	code := byte(codeDisconnectRequest)
	if kind == dynCoA {
		code = codeCoARequest
	}
	r := newReply(make([]byte, 0, 256), code, id, zero16[:])
	if info.nasIP.Is4() {
		a := info.nasIP.As4()
		r.add(attrNASIPAddress, a[:])
	}
	if info.nasID != "" {
		r.addString(attrNASIdentifier, info.nasID)
	}
	if info.userName != "" {
		r.addString(attrUserName, info.userName)
	}
	if info.sessionID != "" {
		r.addString(attrAcctSessionID, info.sessionID)
	}
	if info.station != "" {
		r.addString(attrCallingStationID, info.station)
	}
	r.addUint32(attrEventTimestamp, uint32(now.Unix()))
	if kind == dynCoA && wf != nil {
		w := *wf
		w.Class = ""
		addWiFi(&r, &w)
	}
	if r.err != nil {
		return nil, r.err
	}
	b := r.b
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	h := hmac.New(md5.New, secret)
	h.Write(b) // authenticator and Message-Authenticator are zero here
	h.Sum(b[22:22:38])
	m := md5.New()
	m.Write(b)
	m.Write(secret)
	m.Sum(b[4:4:20])
	return b, nil
}

var (
	errDynCode = errors.New("radius: unexpected code in answer")
	errDynAuth = errors.New("radius: bad Response Authenticator")
)

// checkDynReply validates an answer to req: code, Identifier, Response
// Authenticator and, if present, Message-Authenticator (computed with the
// Request Authenticator). It returns the code and the Error-Cause.
func checkDynReply(raw, req, secret []byte) (code byte, cause uint32, err error) {
	p, err := parsePacket(raw)
	if err != nil {
		return 0, 0, err
	}
	if p.id() != req[1] {
		return 0, 0, errors.New("radius: Identifier mismatch")
	}
	code = p.code()
	switch {
	case req[0] == codeDisconnectRequest && (code == codeDisconnectACK || code == codeDisconnectNAK):
	case req[0] == codeCoARequest && (code == codeCoAACK || code == codeCoANAK):
	default:
		return 0, 0, errDynCode
	}
	m := md5.New()
	m.Write(p.b[:4])
	m.Write(req[4:20])
	m.Write(p.b[headerLen:])
	m.Write(secret)
	if !hmac.Equal(m.Sum(nil), p.auth()) {
		return 0, 0, errDynAuth
	}
	if p.maAt >= 0 {
		h := hmac.New(md5.New, secret)
		h.Write(p.b[:4])
		h.Write(req[4:20])
		h.Write(p.b[headerLen:p.maAt])
		h.Write(zero16[:])
		h.Write(p.b[p.maAt+16:])
		if !hmac.Equal(h.Sum(nil), p.b[p.maAt:p.maAt+16]) {
			return 0, 0, errors.New("radius: bad Message-Authenticator in answer")
		}
	}
	cause, _ = p.uint32Attr(attrErrorCause)
	return code, cause, nil
}

// exchangeDyn sends req to dst and waits for a valid answer, sending the
// same bytes again after each timeout. Invalid datagrams are ignored.
func (s *Server) exchangeDyn(ctx context.Context, dst netip.AddrPort, req, secret []byte) dynResult {
	start := time.Now()
	res := dynResult{Result: "error"}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		res.Err = err
		return res
	}
	defer conn.Close()
	// Cancellation wakes the reader at once.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	var buf [maxPacket]byte
	for try := 0; try <= s.set.dyn.retries; try++ {
		if ctx.Err() != nil {
			res.Err = ctx.Err()
			break
		}
		res.Attempts++
		if _, err := conn.Write(req); err != nil {
			res.Err = err
			break
		}
		conn.SetReadDeadline(time.Now().Add(s.set.dyn.timeout))
		if ctx.Err() != nil { // AfterFunc may have run before the deadline was set
			res.Err = ctx.Err()
			break
		}
		for {
			n, err := conn.Read(buf[:])
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
					res.Result, res.Err = "timeout", nil
					break
				}
				if ctx.Err() != nil {
					err = ctx.Err()
				}
				res.Result, res.Err = "error", err
				res.Took = time.Since(start)
				return res
			}
			code, cause, err := checkDynReply(buf[:n], req, secret)
			if err != nil {
				s.log.Debug("radius: ignoring dynamic authorization answer", "from", dst, "err", err)
				continue
			}
			res.Result = "ack"
			if code == codeDisconnectNAK || code == codeCoANAK {
				res.Result, res.ErrorCause = "nak", cause
			}
			res.Took = time.Since(start)
			return res
		}
	}
	res.Took = time.Since(start)
	if res.Err == nil && res.Result != "timeout" {
		res.Result = "timeout"
	}
	return res
}

// sendDyn sends one Disconnect- or CoA-Request for a session and reports
// the outcome.
func (s *Server) sendDyn(ctx context.Context, kind dynKind, info *sessionInfo, wf *policy.WiFi, code policy.Code, reason string) dynResult {
	n := info.nas
	if n != nil && n.radsec != nil {
		return s.sendDynStream(ctx, kind, info, wf, code, reason) // radsec_coa.go
	}
	dst, ok := dynTarget(s.nas, info)
	if !ok {
		res := dynResult{Result: "error", Err: errors.New("no dynamic authorization address for this NAS")}
		s.reportDyn(kind, info, wf, code, reason, res)
		return res
	}
	var idb [1]byte
	rand.Read(idb[:])
	req, err := buildDynRequest(kind, idb[0], info, wf, n.secret, time.Now())
	var res dynResult
	if err != nil {
		res = dynResult{Result: "error", Err: err}
	} else {
		s.dynStats.sent[kind].Add(1)
		res = s.exchangeDyn(ctx, dst, req, n.secret)
	}
	s.reportDyn(kind, info, wf, code, reason, res)
	return res
}

// dynTarget is where a session's requests go: the source address of the
// NAS's packets, or its NAS-IP-Address when the client prefers it and the
// address belongs to the same configured client — never an address outside
// the configured client networks.
func dynTarget(t nasTable, info *sessionInfo) (netip.AddrPort, bool) {
	n := info.nas
	if n == nil || n.dyn.port == 0 {
		return netip.AddrPort{}, false
	}
	a := info.nasAddr
	if n.dyn.nasIP && info.nasIP.IsValid() && t.lookup(info.nasIP) == n {
		a = info.nasIP
	}
	if !a.IsValid() || t.lookup(a) != n {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), n.dyn.port), true
}

// reportDyn is the one place where the outcome of a Disconnect- or
// CoA-Request is reported: counters and one Info log line (event
// "disconnect" or "coa"). An audit hook belongs here.
// code is the re-validation decision's code (CodeAllowed when only the
// Wi-Fi attributes changed).
func (s *Server) reportDyn(kind dynKind, info *sessionInfo, wf *policy.WiFi, code policy.Code, reason string, res dynResult) {
	c := &s.dynStats
	switch res.Result {
	case "ack":
		c.acks[kind].Add(1)
	case "nak":
		c.naks[kind].Add(1)
	case "timeout":
		c.timeouts[kind].Add(1)
	default:
		c.errors[kind].Add(1)
	}
	nasName := ""
	if info.nas != nil {
		nasName = info.nas.name
	}
	attrs := []any{"event", kind.String(), "nas", nasName, "nas_addr", info.nasAddr.String(),
		"user", info.userName, "session", info.sessionID, "station", info.station,
		"reason", reason, "result", res.Result, "attempts", res.Attempts, "took", res.Took}
	if kind == dynCoA && wf != nil {
		attrs = append(attrs, "old_vlan", info.wifi.VLAN, "vlan", wf.VLAN)
	}
	if res.ErrorCause != 0 {
		attrs = append(attrs, "error_cause", res.ErrorCause)
	}
	if res.Err != nil {
		attrs = append(attrs, "err", res.Err.Error())
	}
	s.log.Info("radius: dynamic authorization", attrs...)
	if s.auditor != nil {
		ev := policy.AuditEvent{Time: time.Now(), Door: "wifi", Event: kind.String(), NAS: nasName,
			NASAddr: netip.AddrPortFrom(info.nasAddr, 0), Allowed: kind == dynCoA && res.Result == "ack",
			Reason: reason + " (NAS answered: " + res.Result + ")", Duration: res.Took}
		ev.Decision.Rule, ev.Decision.Code = info.rule, code
		if len(info.chain) > 0 {
			// Name the session's certificate: subject, issuer, serial, fingerprint.
			ev.Decision.Identity, _ = policy.IdentityOf(info.chain[0])
		}
		ev.Decision.Identity.Name = info.userName
		s.auditor.Audit(ev)
	}
}
