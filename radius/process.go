package radius

import (
	"hash"
	"net"
	"net/netip"
	"time"
)

// worker holds per-goroutine scratch space.
type worker struct {
	md5    hash.Hash
	eapBuf []byte
	sum    [16]byte       // scratch for computed MACs
	src    netip.AddrPort // source of the datagram in work
	conn   net.PacketConn // its socket
	key    cacheKey       // its reply-cache key
}

func newWorker() *worker {
	return &worker{md5: md5Pool.New().(hash.Hash), eapBuf: make([]byte, 0, maxPacket)}
}

func (s *Server) drop(r dropReason) { s.stats.drops[r].Add(1) }

// process handles one datagram: parse, find the client, answer from the
// reply cache, verify, dispatch, remember the reply.
func (s *Server) process(w *worker, j *job) {
	n := j.nas
	if j.cid == 0 {
		n = s.nas.lookup(j.src.Addr())
	}
	if n == nil {
		s.dropLog(nil, j.src, dUnknownClient)
		return
	}
	p, err := parsePacket(j.buf[:j.n])
	if err != nil {
		s.dropLog(n, j.src, dMalformed)
		return
	}
	w.src, w.conn = j.src, j.conn
	key := &w.key
	*key = cacheKey{cid: j.cid, src: j.src, id: p.id()}
	copy(key.auth[:], p.auth())
	switch reply, st := s.cache.lookup(key); st {
	case cacheHit:
		s.stats.cacheHits.Add(1)
		s.send(j, reply)
		return
	case cacheBusy:
		s.dropN(n, dDuplicate)
		return
	}
	h := n.getHMAC()
	defer n.putHMAC(h)
	code := p.code()
	stream := j.cid != 0 // RadSec carries both on one connection
	switch {
	case code == codeAccessRequest && (!j.acct || stream), code == codeStatusServer:
		if p.maAt < 0 {
			s.dropLog(n, j.src, dMissingMA)
			return
		}
		if !p.verifyMA(h, false, w.sum[:0]) {
			s.dropLog(n, j.src, dBadMA)
			return
		}
	case code == codeAccountingRequest && (j.acct || stream):
		if !p.verifyAcctAuth(w.md5, n.secret, w.sum[:0]) {
			s.dropLog(n, j.src, dBadAuthenticator)
			return
		}
		if p.maAt >= 0 && !p.verifyMA(h, true, w.sum[:0]) {
			s.dropLog(n, j.src, dBadMA)
			return
		}
	default:
		s.dropLog(n, j.src, dUnexpectedCode)
		return
	}
	now := time.Now()
	if !s.cache.begin(key, now) {
		s.dropN(n, dDuplicate)
		return
	}
	s.stats.requests[code].Add(1)
	var reply []byte
	switch code {
	case codeAccessRequest:
		reply, err = s.access(w, h, n, p, j.src, now)
	case codeAccountingRequest:
		reply, err = s.accounting(w, h, n, p, j.src)
	case codeStatusServer:
		reply, err = s.statusServer(w, h, n, p, j.acct)
	}
	if reply != nil && code != codeAccountingRequest { // acctResponse echoes it
		reply, err = echoProxyState(reply, p, h, w.md5, n.secret)
	}
	if reply == nil {
		if err == errDecisionPending {
			return // the decision goroutine answers
		}
		s.cache.abandon(key)
		if err != nil {
			s.log.Warn("radius: request dropped", "nas", n.name, "src", j.src.String(), "err", err)
		}
		return
	}
	s.cache.complete(key, reply)
	s.send(j, reply)
}

// statusServer answers RFC 5997 Status-Server: Access-Accept on the
// authentication port, Accounting-Response on the accounting port.
func (s *Server) statusServer(w *worker, h hash.Hash, n *nas, p packet, acct bool) ([]byte, error) {
	code := byte(codeAccessAccept)
	if acct {
		code = codeAccountingResponse
	}
	r := newReply(make([]byte, 0, 64), code, p.id(), p.auth())
	return r.finish(h, w.md5, n.secret)
}
