package eap

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ServerConfig configures the server side of EAP-TLS conversations. It is
// shared by every session and must not be modified after first use.
type ServerConfig struct {
	// TLS is the server configuration. It should ask for a client
	// certificate (tls.RequireAnyClientCert); verification is the caller's.
	TLS *tls.Config
	// MaxMessage caps a reassembled peer message; default MaxMessage.
	MaxMessage int
	// StepTimeout bounds one TLS step (CPU work, no network); default 10s.
	StepTimeout time.Duration
	// WaitGroup, if set, tracks the per-session TLS goroutines.
	WaitGroup *sync.WaitGroup
	// Tickets, if set, keeps TLS session state on the server and issues
	// short tickets (TicketCache); it overrides TLS.WrapSession and
	// UnwrapSession. Nil: crypto/tls's self-contained tickets, which carry
	// the client's certificates.
	Tickets *TicketCache
}

func (c *ServerConfig) maxMessage() int {
	if c.MaxMessage > 0 {
		return c.MaxMessage
	}
	return MaxMessage
}

func (c *ServerConfig) stepTimeout() time.Duration {
	if c.StepTimeout > 0 {
		return c.StepTimeout
	}
	return 10 * time.Second
}

// Outcome tells the caller what to do with a Step's message.
type Outcome uint8

// Outcomes of a step.
const (
	// Continue: send Msg (an EAP-Request) in an Access-Challenge.
	Continue Outcome = iota
	// Decide: the TLS handshake finished; inspect State() and call Accept
	// or Reject. Msg is empty.
	Decide
	// Success: send Msg (EAP-Success) in an Access-Accept with the keys.
	Success
	// Failure: send Msg (EAP-Failure) in an Access-Reject. Err says why.
	Failure
	// Discard: silently drop the response (RFC 3748 section 4.1: wrong
	// identifier). Nothing changed.
	Discard
	// Pending: the TLS goroutine has the message; the step comes later
	// (HandleAsync).
	Pending
)

// Step is the result of handling one EAP Response.
type Step struct {
	Outcome Outcome
	Msg     []byte
	Err     error // reason for Failure or Discard; safe to log
}

type serverState uint8

const (
	stStart     serverState = iota // Start sent, no TLS data yet
	stHandshake                    // TLS running
	stDecide                       // handshake done, waiting for Accept/Reject
	stFinalAck                     // final flight (and commitment) sent, waiting for the ACK
	stDone
)

// ServerSession is the server side of one EAP-TLS conversation. It is not
// safe for concurrent use: the caller serializes steps.
type ServerSession struct {
	cfg   *ServerConfig
	id    byte // identifier of the last Request sent
	state serverState
	frag  int // maximum EAP packet size for this conversation
	in    reassembler
	out   fragmenter
	p     *pump
	msk   []byte
	tk    *sessionTicket // nil without ServerConfig.Tickets
	leaf  presentedLeaf  // the certificate the peer sent, for the audit trail
}

// NewServerSession answers an EAP-Response/Identity with identifier respID:
// it returns the session and the EAP-TLS Start to send. fragSize is the
// largest EAP packet to send (at least 64).
func NewServerSession(cfg *ServerConfig, respID byte, fragSize int) (*ServerSession, []byte) {
	if fragSize < 64 {
		fragSize = 64
	}
	s := &ServerSession{cfg: cfg, id: respID + 1, frag: fragSize}
	return s, AppendTLS(nil, CodeRequest, s.id, FlagStart, 0, nil)
}

// ID is the identifier of the last EAP Request sent.
func (s *ServerSession) ID() byte { return s.id }

// Started reports whether the peer has sent TLS data (the TLS goroutine
// starts once a whole first message is reassembled).
func (s *ServerSession) Started() bool { return s.state != stStart }

func (s *ServerSession) fail(err error) Step {
	s.state = stDone
	s.Close()
	return Step{Outcome: Failure, Msg: AppendFailure(nil, s.id), Err: err}
}

func (s *ServerSession) request() Step {
	s.id++
	return Step{Outcome: Continue, Msg: s.out.next(nil, CodeRequest, s.id, s.frag)}
}

func (s *ServerSession) ack() Step {
	s.id++
	return Step{Outcome: Continue, Msg: AppendTLS(nil, CodeRequest, s.id, 0, 0, nil)}
}

// Handle processes one EAP Response (the reassembled EAP-Message).
func (s *ServerSession) Handle(msg []byte) Step { return s.handle(msg, nil) }

// HandleAsync is Handle for a caller that does not wait for TLS: when the
// message goes to the conversation's TLS goroutine it returns Pending at
// once, and k receives the step on that goroutine (which may block there:
// it is the conversation's own), as soon as TLS has written its next flight
// or finished. The caller must not touch the session until k runs. Steps
// that need no TLS work are returned directly and k is not called.
func (s *ServerSession) HandleAsync(msg []byte, k func(Step)) Step {
	if k == nil {
		return s.handle(msg, nil)
	}
	return s.handle(msg, func(out []byte, finished bool, err error) { k(s.afterTLS(out, finished, err)) })
}

func (s *ServerSession) handle(msg []byte, k then) Step {
	p, err := Parse(msg)
	if err != nil {
		return Step{Outcome: Discard, Err: err}
	}
	if p.Code != CodeResponse {
		return Step{Outcome: Discard, Err: fmt.Errorf("eap: unexpected code %d", p.Code)}
	}
	if p.ID != s.id {
		return Step{Outcome: Discard, Err: fmt.Errorf("eap: identifier %d, want %d", p.ID, s.id)}
	}
	if s.state == stDone || s.state == stDecide {
		return Step{Outcome: Discard, Err: errors.New("eap: conversation not expecting a response")}
	}
	switch p.Type {
	case TypeTLS:
	case TypeNak:
		return s.fail(errors.New("eap: peer refused EAP-TLS (Nak)"))
	default:
		return s.fail(fmt.Errorf("eap: unexpected method %d", p.Type))
	}
	flags, total, frag, err := TLSData(p.Data)
	if err != nil {
		return s.fail(err)
	}
	// Our fragments pending: the peer must ACK each one.
	if s.out.pending() {
		if len(frag) != 0 || flags&FlagMore != 0 {
			return s.fail(errors.New("eap: expected an ACK of our fragment"))
		}
		return s.request()
	}
	if s.state == stFinalAck {
		if len(frag) != 0 || flags&FlagMore != 0 {
			return s.fail(errors.New("eap: peer sent data instead of the final ACK (TLS alert?)"))
		}
		s.state = stDone
		s.Close()
		return Step{Outcome: Success, Msg: AppendSuccess(nil, s.id)}
	}
	if s.state == stStart && len(frag) > 0 {
		s.state = stHandshake
	}
	whole, more, err := s.in.add(flags, total, frag, s.cfg.maxMessage())
	if err != nil {
		return s.fail(err)
	}
	if more {
		return s.ack()
	}
	if len(whole) == 0 {
		return s.fail(errors.New("eap: empty TLS message"))
	}
	s.in.buf = nil // the TLS goroutine gets a copy
	if k != nil {
		// From here the TLS goroutine owns the session until k returns.
		if s.p == nil {
			s.startTLS(whole, k)
		} else {
			s.p.stepAsync(whole, s.cfg.stepTimeout(), k)
		}
		return Step{Outcome: Pending}
	}
	var out []byte
	var finished bool
	if s.p == nil {
		s.startTLS(whole, nil)
		out, finished, err = s.p.wait(s.cfg.stepTimeout())
	} else {
		out, finished, err = s.p.step(whole, s.cfg.stepTimeout())
	}
	return s.afterTLS(out, finished, err)
}

// startTLS starts the conversation's TLS goroutine on the peer's first
// message; k as in HandleAsync.
func (s *ServerSession) startTLS(first []byte, k then) {
	if s.cfg.Tickets != nil {
		s.tk = &sessionTicket{cache: s.cfg.Tickets}
		s.tk.gen = s.tk.cache.generation()
	}
	cfg := perSession(s.cfg.TLS, s.sessionHooks)
	s.p = newPump(first, func(c net.Conn) *tls.Conn { return tls.Server(c, cfg) })
	s.p.start(serverHandshake, s.cfg.WaitGroup, k, s.cfg.stepTimeout())
}

// afterTLS turns what a TLS step wrote into the next EAP step.
func (s *ServerSession) afterTLS(out []byte, finished bool, err error) Step {
	if err != nil {
		return s.fail(fmt.Errorf("eap: tls: %w", err))
	}
	if finished {
		s.state = stDecide
		s.out.data = out
		return Step{Outcome: Decide}
	}
	if len(out) == 0 {
		return s.fail(errors.New("eap: tls produced no output"))
	}
	s.out.data = out
	return s.request()
}

func serverHandshake(c *tls.Conn) error { return c.Handshake() }

// sessionHooks sets this conversation's hooks on a TLS configuration.
func (s *ServerSession) sessionHooks(c *tls.Config) {
	s.leaf.apply(c)
	if s.tk != nil {
		s.tk.apply(c)
	}
}

// State returns the TLS connection state; valid after a Decide step.
func (s *ServerSession) State() tls.ConnectionState {
	if s.p == nil {
		return tls.ConnectionState{}
	}
	return s.p.tls.ConnectionState()
}

// Accept finishes a conversation the caller authorized: it exports the MSK
// and returns the next message (the final flight, for TLS 1.3 with the
// commitment message, or EAP-Success). Err set on Failure, e.g. a TLS 1.2
// peer without Extended Master Secret.
func (s *ServerSession) Accept() Step {
	if s.state != stDecide {
		return s.fail(errors.New("eap: accept out of order"))
	}
	cs := s.p.tls.ConnectionState()
	msk, err := ExportMSK(&cs)
	if err != nil {
		return s.fail(err)
	}
	s.msk = msk
	if cs.Version >= tls.VersionTLS13 {
		// RFC 9190 section 2.5: one byte 0x00 of application data. RFC
		// 9190 lets a resumption send it with the server's Finished (one
		// round trip less), but wpa_supplicant 2.10 then ACKs it and drops
		// its own Finished, so it always follows the peer's Finished.
		if _, err := s.p.tls.Write([]byte{0}); err != nil {
			return s.fail(fmt.Errorf("eap: tls: commitment: %w", err))
		}
		s.out.data = append(s.out.data, s.p.conn.takeOut()...)
	}
	if s.tk != nil {
		s.tk.end(true) // the ticket in the final flight may now resume
	}
	if !s.out.pending() {
		s.state = stDone
		s.Close()
		return Step{Outcome: Success, Msg: AppendSuccess(nil, s.id)}
	}
	s.state = stFinalAck
	return s.request()
}

// Reject ends a conversation the caller did not authorize.
func (s *ServerSession) Reject(reason error) Step { return s.fail(reason) }

// MSK returns the 64-byte Master Session Key after Success.
func (s *ServerSession) MSK() []byte { return s.msk }

// Close stops the TLS goroutine, if any. Safe to call more than once.
func (s *ServerSession) Close() {
	if s.tk != nil {
		s.tk.end(false) // not accepted: the ticket, if any, never resumes
	}
	if s.p != nil {
		s.p.close()
	}
}

// handshakeBytes estimates the memory of a running TLS handshake: the
// goroutine's stack, the tls.Conn with its record buffers and the
// handshake state.
const handshakeBytes = 48 << 10

// Bytes estimates the memory the conversation holds beyond its fixed
// size: the reassembly buffer (its capacity: what a peer sending fragments
// makes the server keep), output not yet sent, and a running TLS
// handshake. The caller uses it for a global memory budget.
func (s *ServerSession) Bytes() int {
	n := cap(s.in.buf) + cap(s.out.data)
	if s.p != nil {
		select {
		case <-s.p.done:
		default:
			n += handshakeBytes
		}
	}
	return n
}
