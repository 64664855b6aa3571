package radius

import (
	"encoding/binary"
	"hash"
)

// acctResponse builds the whole Accounting-Response to p, Proxy-State
// echoed, before the request goes to the committer (which sends it as is
// once the record is durable).
//
// Its Message-Authenticator is computed over a zeroed authenticator, as
// FreeRADIUS computes and checks it. Implementations disagree here:
// radsecproxy 1.9 computes and checks it with the Request Authenticator
// instead (seen in TestRadsecproxyInterop). No RFC defines it (RFC 3579 covers Access-*
// packets only) and every implementation accepts an Accounting-Response
// without one, so over RadSec, where TLS protects every packet anyway, it
// is left out: the answer is accepted by both kinds of peer. Over UDP it
// stays (BlastRADIUS: every answer carries one first), as before.
func (s *Server) acctResponse(w *worker, h hash.Hash, n *nas, p packet) ([]byte, error) {
	r := newReply(make([]byte, 0, 64), codeAccountingResponse, p.id(), p.auth())
	r.maZero = true
	reply, err := r.finish(h, w.md5, n.secret)
	if err != nil {
		return nil, err
	}
	if reply, err = echoProxyState(reply, p, h, w.md5, n.secret); err != nil {
		return nil, err
	}
	if _, stream := w.conn.(*radsecConn); stream {
		reply = withoutMA(reply, p.auth(), w.md5, n.secret)
	}
	return reply, nil
}

// withoutMA removes the leading Message-Authenticator of a finished reply
// and signs it again (Response Authenticator over the Request
// Authenticator reqAuth). m is a plain MD5.
func withoutMA(b, reqAuth []byte, m hash.Hash, secret []byte) []byte {
	out := make([]byte, 0, len(b)-maLen)
	out = append(out, b[:headerLen]...)
	out = append(out, b[headerLen+maLen:]...)
	binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
	copy(out[4:20], reqAuth)
	m.Reset()
	m.Write(out)
	m.Write(secret)
	m.Sum(out[4:4:20])
	return out
}
