package radbench

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2869"
	"layeh.com/radius/vendors/microsoft"

	"github.com/gatehouse/gatehouse/radius/eap"
)

// Client is a generic EAP-TLS supplicant speaking RADIUS as a NAS would: it
// sends a Message-Authenticator in every Access-Request, echoes State,
// verifies the Response Authenticator and requires a Message-Authenticator
// in every reply (BlastRADIUS). It works against any RADIUS server.
type Client struct {
	// Addr is the server's authentication address, HOST:PORT.
	Addr string
	// Secret is the shared secret.
	Secret []byte
	// Timeout is the wait for one reply before retransmitting; default 2s.
	Timeout time.Duration
	// Retries is the number of retransmissions of one request; default 2.
	Retries int
	// FragSize is the supplicant's largest EAP packet; default 1020.
	FragSize int
	// FramedMTU, when not zero, is sent as Framed-MTU.
	FramedMTU int
	// NASIdentifier is sent as NAS-Identifier; default "radbench".
	NASIdentifier string
	// CallingStationID is sent as Calling-Station-Id; default
	// "02-00-00-00-00-01".
	CallingStationID string
	// MAFirst requires the Message-Authenticator to be the first
	// attribute of every reply (BlastRADIUS-hardened servers such as
	// gatehouse); by default it must be present and valid anywhere.
	MAFirst bool
}

// AuthResult describes one finished conversation.
type AuthResult struct {
	Accepted bool          // Access-Accept with EAP-Success
	Reply    *layeh.Packet // the final Access-Accept or Access-Reject
	Request  *layeh.Packet // the request it answers (for decrypting attributes)
	MSK      []byte        // the supplicant's MSK (Accepted only)
	RecvKey  []byte        // MS-MPPE-Recv-Key decrypted from the reply
	SendKey  []byte        // MS-MPPE-Send-Key decrypted from the reply
	Rounds   int           // RADIUS round trips
	TLS      tls.ConnectionState
	Retrans  int // retransmissions sent
}

// ErrNoAnswer is returned when the server never answered a request.
var ErrNoAnswer = errors.New("radbench: no answer from server")

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 2 * time.Second
}

func (c *Client) retries() int {
	if c.Retries > 0 {
		return c.Retries
	}
	return 2
}

// Authenticate runs one EAP-TLS authentication with identity and the client
// TLS configuration conf. A reject is not an error: see AuthResult.Accepted.
func (c *Client) Authenticate(ctx context.Context, identity string, conf *tls.Config) (*AuthResult, error) {
	conn, err := net.Dial("udp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("radbench: %w", err)
	}
	defer conn.Close()
	peer := &eap.Peer{Identity: identity, TLS: conf, FragSize: c.FragSize}
	defer peer.Close()
	res := &AuthResult{}
	msg := peer.Identify(0)
	var state []byte
	var idb [1]byte
	rand.Read(idb[:])
	id := idb[0]
	buf := make([]byte, 4096)
	for round := 0; ; round++ {
		if round > 200 {
			return res, errors.New("radbench: too many round trips")
		}
		req := layeh.New(layeh.CodeAccessRequest, c.Secret)
		req.Identifier = id
		id++
		rfc2865.UserName_SetString(req, identity)
		nasID := c.NASIdentifier
		if nasID == "" {
			nasID = "radbench"
		}
		rfc2865.NASIdentifier_SetString(req, nasID)
		csid := c.CallingStationID
		if csid == "" {
			csid = "02-00-00-00-00-01"
		}
		rfc2865.CallingStationID_SetString(req, csid)
		rfc2865.NASPortType_Set(req, rfc2865.NASPortType_Value_Wireless80211)
		if c.FramedMTU > 0 {
			rfc2865.FramedMTU_Set(req, rfc2865.FramedMTU(c.FramedMTU))
		}
		AddEAP(req, msg, state)
		wire, err := EncodeRequest(req)
		if err != nil {
			return res, err
		}
		reply, raw, err := c.exchange(ctx, conn, wire, buf, res)
		if err != nil {
			return res, err
		}
		res.Rounds++
		reply.Secret = c.Secret
		_ = raw
		eapMsg := make([]byte, 0, 1500)
		for _, a := range reply.Attributes {
			if a.Type == rfc2869.EAPMessage_Type {
				eapMsg = append(eapMsg, a.Attribute...)
			}
		}
		switch reply.Code {
		case layeh.CodeAccessChallenge:
			state = rfc2865.State_Get(reply)
			resp, done, err := peer.Handle(eapMsg)
			if err != nil || done {
				return res, fmt.Errorf("radbench: challenge ended the conversation: %v", err)
			}
			msg = resp
		case layeh.CodeAccessAccept, layeh.CodeAccessReject:
			res.Reply, res.Request = reply, req
			res.TLS = peer.State()
			if len(eapMsg) > 0 {
				_, _, err = peer.Handle(eapMsg)
			} else {
				err = errors.New("no EAP-Message")
			}
			if reply.Code == layeh.CodeAccessReject {
				return res, nil
			}
			if err != nil {
				return res, fmt.Errorf("radbench: Access-Accept but EAP says: %w", err)
			}
			res.Accepted = true
			res.MSK = peer.MSK()
			res.RecvKey, _ = microsoft.MSMPPERecvKey_Lookup(reply, req)
			res.SendKey, _ = microsoft.MSMPPESendKey_Lookup(reply, req)
			return res, nil
		default:
			return res, fmt.Errorf("radbench: unexpected reply %v", reply.Code)
		}
	}
}

// ctxDone is ctx.Err(), but also reports a deadline that has passed before
// the context's timer has fired: the read deadline is capped at ctx's, so
// without this a client whose context is about to expire would see its
// reads time out at once and fire every retransmission — and then start
// new conversations doing the same — in a burst (at the end of every
// radbench run this flooded the server with a few hundred datagrams in a
// millisecond, which it dropped as "overload").
func ctxDone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// exchange sends wire and waits for the authentic reply, retransmitting
// the same bytes on timeout.
func (c *Client) exchange(ctx context.Context, conn net.Conn, wire, buf []byte, res *AuthResult) (*layeh.Packet, []byte, error) {
	for try := 0; try <= c.retries(); try++ {
		if err := ctxDone(ctx); err != nil {
			return nil, nil, err
		}
		if try > 0 {
			res.Retrans++
		}
		if _, err := conn.Write(wire); err != nil {
			return nil, nil, fmt.Errorf("radbench: send: %w", err)
		}
		deadline := time.Now().Add(c.timeout())
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		conn.SetReadDeadline(deadline)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					if err := ctxDone(ctx); err != nil {
						return nil, nil, err
					}
					break
				}
				return nil, nil, fmt.Errorf("radbench: receive: %w", err)
			}
			raw := buf[:n]
			if n < 20 || raw[1] != wire[1] {
				continue // stale or junk
			}
			if !layeh.IsAuthenticResponse(raw, wire, c.Secret) {
				continue
			}
			at, err := verifyReplyMA(raw, wire[4:20], c.Secret)
			if err == nil && c.MAFirst && at != 20 {
				err = errors.New("radbench: Message-Authenticator is not the first attribute")
			}
			if err != nil {
				return nil, nil, fmt.Errorf("%w (in %v)", err, layeh.Code(raw[0]))
			}
			p, err := layeh.Parse(raw, c.Secret)
			if err != nil {
				return nil, nil, fmt.Errorf("radbench: reply: %w", err)
			}
			return p, append([]byte(nil), raw...), nil
		}
	}
	return nil, nil, ErrNoAnswer
}

// AddEAP adds msg to p as EAP-Message attributes (RFC 3579 section 3.1:
// split into 253-byte pieces, in order) and, unless state is nil, a State.
func AddEAP(p *layeh.Packet, msg, state []byte) {
	for m := msg; len(m) > 0; m = m[min(len(m), 253):] {
		p.Add(rfc2869.EAPMessage_Type, m[:min(len(m), 253)])
	}
	if state != nil {
		rfc2865.State_Set(p, state)
	}
}

// EncodeRequest encodes an Access-Request (or Status-Server) with a
// Message-Authenticator, added as the first attribute if not present.
func EncodeRequest(p *layeh.Packet) ([]byte, error) {
	p.Attributes.Del(rfc2869.MessageAuthenticator_Type)
	p.Attributes = append(layeh.Attributes{{Type: rfc2869.MessageAuthenticator_Type, Attribute: make([]byte, 16)}}, p.Attributes...)
	b, err := p.Encode()
	if err != nil {
		return nil, err
	}
	h := hmac.New(md5.New, p.Secret)
	h.Write(b)
	copy(b[22:38], h.Sum(nil))
	return b, nil
}

// CheckReplyMA verifies the Message-Authenticator of a reply (RFC 3579
// section 3.2, computed with the Request Authenticator) and that it is the
// first attribute, as a BlastRADIUS-hardened server sends it. For an
// Accounting-Response to an Accounting-Request pass reqAuth nil: the MAC
// is then computed over a zeroed authenticator, as FreeRADIUS does.
func CheckReplyMA(raw, reqAuth, secret []byte) error {
	at, err := verifyReplyMA(raw, reqAuth, secret)
	if err == nil && at != 20 {
		err = errors.New("radbench: Message-Authenticator is not the first attribute")
	}
	return err
}

// verifyReplyMA finds and checks the Message-Authenticator of a reply; it
// returns the attribute's offset.
func verifyReplyMA(raw, reqAuth, secret []byte) (int, error) {
	at := -1
	for i := 20; i+2 <= len(raw); {
		l := int(raw[i+1])
		if l < 2 || i+l > len(raw) {
			return -1, errors.New("radbench: malformed reply")
		}
		if raw[i] == 80 {
			if at >= 0 || l != 18 {
				return -1, errors.New("radbench: bad Message-Authenticator")
			}
			at = i
		}
		i += l
	}
	if at < 0 {
		return -1, errors.New("radbench: reply without Message-Authenticator")
	}
	b := append([]byte(nil), raw...)
	copy(b[4:20], reqAuth)
	if raw[0] == 5 && reqAuth == nil { // Accounting-Response to Accounting-Request: over zeroes
		clear(b[4:20])
	}
	clear(b[at+2 : at+18])
	h := hmac.New(md5.New, secret)
	h.Write(b)
	if !hmac.Equal(h.Sum(nil), raw[at+2:at+18]) {
		return -1, errors.New("radbench: reply Message-Authenticator is wrong")
	}
	return at, nil
}
