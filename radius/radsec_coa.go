package radius

import (
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// Dynamic authorization over RadSec (RFC 6614 section 2.5): a session that
// came over a RadSec connection is disconnected (or changed) by a
// Disconnect- or CoA-Request sent over the connection of the access point
// it came from — the newest open connection of the same radsec_client
// entry from the session's NAS address. When that access point has no
// connection open the request fails ("error", nothing to send it over):
// gatehouse does not open connections to access points. The answer comes
// back on the same connection; its reader hands it to the waiting request
// by Identifier. TCP does not lose packets, so the request is sent once
// and waited for (dynauth_timeout × (1 + dynauth_retries)).

func isDynAnswer(code byte) bool {
	switch code {
	case codeDisconnectACK, codeDisconnectNAK, codeCoAACK, codeCoANAK:
		return true
	}
	return false
}

// dynAnswer hands an answer to the request waiting for its Identifier.
func (c *radsecConn) dynAnswer(b []byte) {
	c.dynMu.Lock()
	ch, ok := c.dyn[b[1]]
	if ok {
		delete(c.dyn, b[1])
	}
	c.dynMu.Unlock()
	if !ok {
		c.r.s.log.Debug("radius: radsec: unexpected dynamic authorization answer", "src", c.remote.String(), "code", b[0])
		return
	}
	ch <- b // buffered, one answer per request
}

// failDyn wakes the requests still waiting when the connection closes.
func (c *radsecConn) failDyn() {
	c.dynMu.Lock()
	for id, ch := range c.dyn {
		close(ch)
		delete(c.dyn, id)
	}
	c.dynMu.Unlock()
}

// takeDynID reserves a free Identifier on the connection.
func (c *radsecConn) takeDynID(ch chan<- []byte) (byte, bool) {
	var r [1]byte
	rand.Read(r[:])
	c.dynMu.Lock()
	defer c.dynMu.Unlock()
	if c.closed() {
		return 0, false
	}
	if c.dyn == nil {
		c.dyn = make(map[byte]chan<- []byte)
	}
	for i := range 256 {
		id := r[0] + byte(i)
		if _, used := c.dyn[id]; !used {
			c.dyn[id] = ch
			return id, true
		}
	}
	return 0, false
}

func (c *radsecConn) releaseDynID(id byte) {
	c.dynMu.Lock()
	delete(c.dyn, id)
	c.dynMu.Unlock()
}

// connFor is the newest open connection of client n from addr.
func (r *radsecServer) connFor(n *nas, addr netip.Addr) *radsecConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best *radsecConn
	for _, c := range r.conns {
		if c.nas == n && c.remote.Addr() == addr.Unmap() && !c.closed() && (best == nil || c.id > best.id) {
			best = c
		}
	}
	return best
}

// sendDynStream is sendDyn for a session of a RadSec client.
func (s *Server) sendDynStream(ctx context.Context, kind dynKind, info *sessionInfo, wf *policy.WiFi, code policy.Code, reason string) dynResult {
	res := s.exchangeDynStream(ctx, kind, info, wf)
	s.reportDyn(kind, info, wf, code, reason, res)
	return res
}

func (s *Server) exchangeDynStream(ctx context.Context, kind dynKind, info *sessionInfo, wf *policy.WiFi) dynResult {
	start := time.Now()
	res := dynResult{Result: "error"}
	n := info.nas
	if n.dyn.port == 0 {
		res.Err = errors.New("dynamic authorization is off for this radsec_client")
		return res
	}
	c := s.rs.connFor(n, info.nasAddr)
	if c == nil {
		res.Err = errors.New("the access point has no RadSec connection open")
		return res
	}
	ch := make(chan []byte, 1)
	id, ok := c.takeDynID(ch)
	if !ok {
		res.Err = errors.New("RadSec connection closed or 256 requests in flight on it")
		return res
	}
	defer c.releaseDynID(id)
	req, err := buildDynRequest(kind, id, info, wf, n.secret, time.Now())
	if err != nil {
		res.Err = err
		return res
	}
	s.dynStats.sent[kind].Add(1)
	res.Attempts = 1
	if err := c.send(req); err != nil {
		res.Err = err
		return res
	}
	t := time.NewTimer(s.set.dyn.timeout * time.Duration(1+s.set.dyn.retries))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			res.Err, res.Took = ctx.Err(), time.Since(start)
			return res
		case <-t.C:
			res.Result, res.Took = "timeout", time.Since(start)
			return res
		case b, ok := <-ch:
			res.Took = time.Since(start)
			if !ok {
				res.Err = errors.New("RadSec connection closed")
				return res
			}
			code, cause, err := checkDynReply(b, req, n.secret)
			if err != nil {
				res.Err = err
				return res
			}
			res.Result = "ack"
			if code == codeDisconnectNAK || code == codeCoANAK {
				res.Result, res.ErrorCause = "nak", cause
			}
			return res
		}
	}
}
