package eap

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// Peer is the supplicant side of one EAP-TLS conversation, for tests and
// load generation. It answers EAP Requests with Responses. Not safe for
// concurrent use.
type Peer struct {
	// Identity sent in the EAP-Response/Identity.
	Identity string
	// TLS is the client configuration (with the client certificate).
	TLS *tls.Config
	// FragSize is the largest EAP packet sent; default 1020.
	FragSize int
	// StepTimeout bounds one TLS step; default 10s.
	StepTimeout time.Duration

	in  reassembler
	out fragmenter
	p   *pump
	fin bool // TLS goroutine finished
	msk []byte
}

// Errors a Peer reports when the conversation ends.
var (
	ErrFailure = errors.New("eap: server sent EAP-Failure")
)

// Identify returns the Response/Identity to a Request/Identity with id (any
// id the caller chooses when the authenticator starts with the identity).
func (c *Peer) Identify(id byte) []byte { return AppendIdentity(nil, id, c.Identity) }

func (c *Peer) frag() int {
	if c.FragSize > 0 {
		return c.FragSize
	}
	return 1020
}

func (c *Peer) timeout() time.Duration {
	if c.StepTimeout > 0 {
		return c.StepTimeout
	}
	return 10 * time.Second
}

// Handle processes one message from the server. It returns the response to
// send, or done=true on EAP-Success (err nil) or EAP-Failure (ErrFailure).
func (c *Peer) Handle(msg []byte) (resp []byte, done bool, err error) {
	p, err := Parse(msg)
	if err != nil {
		return nil, true, err
	}
	switch p.Code {
	case CodeSuccess:
		c.Close()
		if c.msk == nil {
			return nil, true, errors.New("eap: EAP-Success before the TLS handshake finished")
		}
		return nil, true, nil
	case CodeFailure:
		c.Close()
		return nil, true, ErrFailure
	case CodeRequest:
	default:
		return nil, true, fmt.Errorf("eap: unexpected code %d", p.Code)
	}
	switch p.Type {
	case TypeIdentity:
		return c.Identify(p.ID), false, nil
	case TypeTLS:
	default:
		return AppendNak(nil, p.ID, TypeTLS), false, nil
	}
	flags, total, frag, err := TLSData(p.Data)
	if err != nil {
		return nil, true, err
	}
	if flags&FlagStart != 0 {
		c.Close()
		c.p, c.fin, c.msk = nil, false, nil
		c.p = startPump(nil, func(nc net.Conn) *tls.Conn { return tls.Client(nc, c.TLS) }, peerRun, nil)
		out, fin, err := c.p.wait(c.timeout())
		return c.after(p.ID, out, fin, err)
	}
	if c.out.pending() {
		if len(frag) != 0 {
			return nil, true, errors.New("eap: expected an ACK of our fragment")
		}
		return c.out.next(nil, CodeResponse, p.ID, c.frag()), false, nil
	}
	whole, more, err := c.in.add(flags, total, frag, MaxMessage)
	if err != nil {
		return nil, true, err
	}
	if more {
		return AppendTLS(nil, CodeResponse, p.ID, 0, 0, nil), false, nil
	}
	if c.p == nil || c.fin {
		return nil, true, errors.New("eap: TLS data without a conversation")
	}
	out, fin, err := c.p.step(whole, c.timeout())
	return c.after(p.ID, out, fin, err)
}

func (c *Peer) after(id byte, out []byte, fin bool, err error) ([]byte, bool, error) {
	if err != nil {
		return nil, true, fmt.Errorf("eap: tls: %w", err)
	}
	if fin {
		c.fin = true
		cs := c.p.tls.ConnectionState()
		msk, err := ExportMSK(&cs)
		if err != nil {
			return nil, true, err
		}
		c.msk = msk
	}
	if len(out) == 0 {
		return AppendTLS(nil, CodeResponse, id, 0, 0, nil), false, nil
	}
	c.out.data = out
	return c.out.next(nil, CodeResponse, id, c.frag()), false, nil
}

// peerRun runs the client handshake and, for TLS 1.3, reads the server's
// one-byte commitment message (RFC 9190 section 2.5).
func peerRun(c *tls.Conn) error {
	if err := c.Handshake(); err != nil {
		return err
	}
	if c.ConnectionState().Version < tls.VersionTLS13 {
		return nil
	}
	var b [1]byte
	n, err := c.Read(b[:])
	if err != nil {
		return fmt.Errorf("reading commitment: %w", err)
	}
	if n != 1 || b[0] != 0 {
		return errors.New("bad commitment message")
	}
	return nil
}

// MSK returns the Master Session Key after Success.
func (c *Peer) MSK() []byte { return c.msk }

// State returns the TLS connection state once the TLS part finished (zero
// before).
func (c *Peer) State() tls.ConnectionState {
	if c.p == nil || !c.fin {
		return tls.ConnectionState{}
	}
	return c.p.tls.ConnectionState()
}

// Close ends the TLS goroutine, if any.
func (c *Peer) Close() {
	if c.p != nil {
		c.p.close()
	}
}
